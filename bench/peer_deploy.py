#!/usr/bin/env python3
"""Deploy venvstacks' publish output the way its documentation describes, for the deploy rows.

venvstacks has no deploy command: its users unpack each layer archive next to the others and
run the layer's ``postinstall.py`` with the base runtime's python (runtimes first, then
frameworks, then applications). This script does exactly that, with GNU tar, and keeps a
record of the archive sha256 per install target so a later publish only unpacks layers
whose archive changed (what an update script for venvstacks' output would do).

Usage: peer_deploy.py OUTPUT_DIR TARGET_DIR
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

RECORD = "peer_deployed.json"  # bench.py's forget_deployed edits it
KINDS = ("runtimes", "frameworks", "applications")


def manifest(output: Path) -> dict[str, list[dict[str, object]]]:
    meta = output / "__venvstacks__"
    candidates = [meta / "venvstacks.json", *sorted(meta.glob("*/venvstacks.json"))]
    for path in candidates:
        if path.is_file():
            layers: dict[str, list[dict[str, object]]] = json.loads(path.read_text())["layers"]
            return layers
    sys.exit(f"no venvstacks.json under {meta}")


def main() -> None:
    output, target = Path(sys.argv[1]).absolute(), Path(sys.argv[2]).absolute()
    target.mkdir(parents=True, exist_ok=True)
    record_path = target / RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    layers = [layer for kind in KINDS for layer in manifest(output).get(kind, [])]
    changed = []
    for layer in layers:
        name = str(layer["install_target"])
        digest = dict(layer["archive_hashes"])["sha256"]  # type: ignore[call-overload]
        if record.get(name) == digest and (target / name).is_dir():
            continue
        shutil.rmtree(target / name, ignore_errors=True)
        subprocess.run(
            ["tar", "-xf", str(output / str(layer["archive_name"])), "-C", str(target)], check=True
        )
        changed.append(layer)
        record[name] = digest
    for layer in changed:  # lower layers first: their postinstall must have run
        name = str(layer["install_target"])
        config = json.loads(
            (target / name / "share/venv/metadata/venvstacks_layer.json").read_text()
        )
        base_python = (target / name / config["base_python"]).absolute()
        subprocess.run([str(base_python), str(target / name / "postinstall.py")], check=True)
    record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
