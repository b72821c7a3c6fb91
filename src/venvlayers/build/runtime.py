"""Runtime provisioning: ``uv python install`` of a layer's CPython into the build folder.

uv's own mirror settings (``UV_PYTHON_INSTALL_MIRROR``, ``UV_PYTHON_DOWNLOADS_JSON_URL``)
are honoured, so air-gapped builds work from an internal runtime mirror
(``venvlayers.build.runtime_mirror`` writes the downloads JSON for one).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from venvlayers.core.errors import BuildError, UvError
from venvlayers.core.rmtree import remove_tree
from venvlayers.core.uv import run_uv


def uv_python_request(python_implementation: str) -> str:
    """``cpython@3.12.1`` (venvstacks spelling) -> ``cpython-3.12.1`` (uv spelling)."""
    return python_implementation.replace("@", "-")


def install_runtime(python_implementation: str, destination: Path, *, layer_name: str) -> None:
    """Install the runtime into ``destination`` (replaced only once fully installed)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".runtime-", dir=destination.parent) as scratch:
        scratch_path = Path(scratch)
        try:
            run_uv(
                [
                    "python",
                    "install",
                    "--install-dir",
                    str(scratch_path),
                    "--no-bin",
                    "--no-registry",
                    "--force",
                    uv_python_request(python_implementation),
                ],
                what=f"install {python_implementation} for {layer_name}",
            )
        except UvError as exc:
            raise BuildError(
                f"{exc} (offline? point UV_PYTHON_DOWNLOADS_JSON_URL or UV_PYTHON_INSTALL_MIRROR at a runtime mirror)"
            ) from None
        installed = [
            p
            for p in scratch_path.iterdir()
            if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
        ]
        if len(installed) != 1:
            raise BuildError(
                f"uv installed {len(installed)} runtimes for {python_implementation}; expected one"
            )
        restore_build_prefix(installed[0])
        drop_uv_marker(installed[0])
        if destination.exists():
            remove_tree(destination)
        installed[0].rename(destination)


# python-build-standalone runtimes are built with this prefix; uv rewrites it to the
# folder it installs into, which is our scratch folder: a build-machine path that would
# make runtime archives differ between build folders (and name a folder that is gone).
PBS_PREFIX = "/install"


def restore_build_prefix(installed: Path) -> list[Path]:
    """Put python-build-standalone's own prefix back into the sysconfig data uv patched,
    so the runtime holds what its archive held (as venvstacks ships it). Returns the
    files changed."""
    # uv may write the folder as given or with links resolved
    patched = sorted({str(installed), str(installed.resolve())}, key=len, reverse=True)
    changed = []
    for data in sorted(installed.glob("lib/python*/_sysconfigdata_*.py")) + sorted(
        installed.glob("Lib/_sysconfigdata_*.py")
    ):
        text = original = data.read_text(encoding="utf-8")
        for path in patched:
            text = text.replace(path, PBS_PREFIX)
        if text != original:
            data.write_text(text, encoding="utf-8")
            changed.append(data)
    return changed


def drop_uv_marker(installed: Path) -> list[Path]:
    """Remove the PEP 668 ``EXTERNALLY-MANAGED`` file ``uv python install`` adds (it says the
    Python "is managed by uv", untrue once deployed): the runtime layer holds what the
    runtime archive held, as venvstacks ships it. Returns the files removed."""
    removed = []
    for marker in sorted(installed.glob("lib/python*/EXTERNALLY-MANAGED")) + sorted(
        installed.glob("Lib/EXTERNALLY-MANAGED")
    ):
        if marker.is_file() and not marker.is_symlink():
            marker.unlink()
            removed.append(marker)
    return removed
