"""A small merge output for release tests: two archives, the index, one platform's manifest."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

ARCHIVES = {
    "cpython-3.12": "cpython-3.12-linux_x86_64-1.tar.xz",
    "app-demo": "app-demo-linux_x86_64-3.tar.xz",
}


def merged_output(folder: Path) -> Path:
    """A merge output in ``folder``: archives, index, the platform's manifest, a stray report."""
    (folder / "__venvstacks__").mkdir(parents=True)
    rng = random.Random(7)
    layers = {}
    for layer, name in ARCHIVES.items():
        data = rng.randbytes(50_000)
        (folder / name).write_bytes(data)
        layers[layer] = {
            "category": "runtimes",
            "install_target": layer,
            "lock_version": 3,
            "requirements_hash": "sha256:00",
            "locked_at": "2026-01-01T00:00:00+00:00",
            "platforms": {
                "linux_x86_64": {
                    "archive_name": name,
                    "archive_size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "metadata": f"__venvstacks__/env_metadata/{layer}-linux_x86_64.json",
                }
            },
        }
    index = {"format_version": 1, "platforms": ["linux_x86_64"], "layers": layers}
    (folder / "venvstacks-index.json").write_text(json.dumps(index))
    (folder / "__venvstacks__" / "venvstacks-linux_x86_64.json").write_text('{"layers": {}}')
    (folder / "merge-report.md").write_text("# a report that is not for deployers\n")
    return folder
