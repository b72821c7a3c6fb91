"""A runner tool cache (RUNNER_TOOL_CACHE) holding uv, as setup-uv finds it without
downloading: ``uv/<version>/x86_64/{uv,uvx}`` plus the ``x86_64.complete`` marker that
@actions/tool-cache writes when it caches a tool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import uv_executable


def uv_version(uv: Path) -> str:
    return subprocess.run(
        [str(uv), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]


def provision_uv(tool_cache: Path, uv: Path | None = None) -> str:
    """Put ``uv`` (default: the one installed with the project) in the tool cache; its version."""
    binary = uv or Path(uv_executable())
    version = uv_version(binary)
    folder = tool_cache / "uv" / version / "x86_64"
    if not (tool_cache / "uv" / version / "x86_64.complete").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(binary, folder / "uv")
        uvx = binary.with_name("uvx")
        if uvx.is_file():
            shutil.copy2(uvx, folder / "uvx")
        (tool_cache / "uv" / version / "x86_64.complete").write_text("", encoding="utf-8")
    return version
