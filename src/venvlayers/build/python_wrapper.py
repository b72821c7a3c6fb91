"""The ``bin/python`` wrapper of a POSIX layer whose own or lower layers ship shared
libraries: it extends the loader path, then runs the real interpreter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from venvlayers.build.layout import DYNLIB_DIR, LayerLayout
from venvlayers.stack.spec import LayerKind


def install_python_wrapper(target: Path, layout: LayerLayout, dynlib_dirs: Sequence[str]) -> None:
    """With shared libraries in its own or lower layers' dynlib folders, the layer's
    ``bin/python`` (and ``python3``) set the loader path before running the real
    interpreter (POSIX only). The layer's own folder serves extensions whose wheel
    links a library of another wheel in the same layer without an rpath."""
    own = (target / DYNLIB_DIR).is_dir()
    if not (dynlib_dirs or own) or layout.platform.is_windows:
        return
    variable = "DYLD_LIBRARY_PATH" if layout.platform.is_macos else "LD_LIBRARY_PATH"
    real = Path(layout.python(LayerKind.RUNTIME)).name
    script = python_wrapper(variable, [d.removeprefix("../") for d in dynlib_dirs], real, own=own)
    for alias in ("python", "python3"):
        wrapper = target / "bin" / alias
        wrapper.unlink(missing_ok=True)  # never write through a link (or a hard link)
        wrapper.write_text(script, encoding="utf-8")
        wrapper.chmod(0o755)


def python_wrapper(
    variable: str, dynlib_dirs: Sequence[str], real_python: str, *, own: bool = False
) -> str:
    """A POSIX sh wrapper that appends dynlib folders (its own layer's first, then the
    lower layers', given relative to the folder holding the layers), then runs Python."""
    lines = [
        "#!/bin/sh",
        "# venvlayers: make lower layers' shared libraries loadable, then run Python.",
        "# Folders are appended, so a caller's own setting still wins.",
        'here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)',
        f'add() {{ case ":${{{variable}:-}}:" in *":$1:"*) ;; *) {variable}="${{{variable}:+${variable}:}}$1" ;; esac; }}',
    ]
    if own:
        lines.append(f'add "$here/../{DYNLIB_DIR}"')
    lines += [f'add "$here/../../{d}"' for d in dynlib_dirs]
    lines += [f"export {variable}", f'exec "$here/{real_python}" "$@"', ""]
    return "\n".join(lines)
