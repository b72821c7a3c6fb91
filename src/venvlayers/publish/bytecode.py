"""``publish --bytecode``: a staged layer's bytecode compiled into its archive.

A first deploy spends most of its CPU compiling bytecode (every module of every layer,
the runtime's standard library included). With ``--bytecode`` publish does that once:
the layer's runtime (from the build folder; a runtime writes the bytecode of its own
Python version) compiles every file of the staged layer's ``lib`` folder into
``__pycache__`` as *unchecked-hash* pycs (PEP 552: loaded without reading or stat-ing
the source, valid whatever mtimes the unpacking gives the files), reproducibly (the
same bytes on every publish, see ``layer_scripts/compile_bytecode.py``). The names
recorded in them are the layer's own paths (``<install_target>/lib/...``): the import
system replaces them with the real path when it loads a module. Deploy finds the pycs
valid and compiles nothing.

Costs: the archives grow (bytecode compresses less well than source), publish compiles,
and a deployed source file edited by hand is not recompiled (Python trusts the pyc).
"""

from __future__ import annotations

import os
from pathlib import Path

from venvlayers.build.layout import LayerLayout
from venvlayers.core.errors import PublishError
from venvlayers.core.process import run_process
from venvlayers.layer_scripts import compile_bytecode
from venvlayers.stack.spec import LayerKind


def compile_staged_layer(
    stage: Path, install_target: str, runtime_build: Path, layout: LayerLayout
) -> None:
    """Write unchecked-hash pycs for every Python file under ``stage``'s lib folder
    (``stage`` holds new folders, so the pycs are new files, never written through one of
    its hard links into the build folder)."""
    lib_name = "Lib" if layout.platform.is_windows else "lib"
    lib = stage / lib_name
    if not lib.is_dir():
        return
    python = runtime_build / layout.python(LayerKind.RUNTIME)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    run_process(
        [
            python,
            "-S",
            "-B",
            compile_bytecode.__file__,
            "--unchecked-hash",
            lib,
            f"{install_target}/{lib_name}",
        ],
        what=f"{install_target}: compiling bytecode with {python}",
        env=env,
        error=PublishError,
    )
