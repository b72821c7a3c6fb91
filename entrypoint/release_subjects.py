"""List what the build-stacks workflow attests after a release (its attest-sboms matrix).

Reads a released folder (the merged stack plus the SHA256SUMS that ``venvlayers release``
wrote, asset names as GitHub shows them) and writes one step output, ``sboms``: a JSON list
of ``{"sbom": <file in the folder>, "name": <release asset>, "digest": "sha256:<hex>"}``, one
per archive that has an SBOM beside it (``<archive stem>.cdx.json``). Exit 1 when an archive
listed in SHA256SUMS has no SBOM, so an attestation is never silently skipped.

Usage: python3 release_subjects.py RELEASED_DIR   (GITHUB_OUTPUT names the output file)
Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ARCHIVE_SUFFIXES = (".tar.xz", ".tar.zst", ".tar.gz", ".tar.bz2", ".zip")
SBOM_SUFFIX = ".cdx.json"
# the name GitHub gives an uploaded file (as `venvlayers release` uploads it)
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def asset_name(name: str) -> str:
    return UNSAFE.sub(".", name)


def subjects(folder: Path) -> tuple[list[dict[str, str]], list[str]]:
    """(one entry per archive with an SBOM, archives without one)."""
    sboms = {asset_name(p.name): p.name for p in folder.glob(f"*{SBOM_SUFFIX}")}
    found, missing = [], []
    for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        suffix = next((s for s in ARCHIVE_SUFFIXES if name.endswith(s)), None)
        if not name or suffix is None:
            continue
        sbom = sboms.get(name[: -len(suffix)] + SBOM_SUFFIX)
        if sbom is None:
            missing.append(name)
        else:
            found.append({"sbom": sbom, "name": name, "digest": f"sha256:{digest}"})
    return found, missing


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    found, missing = subjects(Path(argv[1]))
    for name in missing:
        print(
            f"::error::{name} has no SBOM beside it; republish with a venvlayers that writes them"
        )
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as output:
        output.write(f"sboms={json.dumps(found, sort_keys=True)}\n")
    print(f"{len(found)} archive(s) with an SBOM to attest")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
