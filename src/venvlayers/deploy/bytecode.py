"""Bytecode for deployed layers: every layer's Python files compiled at once, on every core.

A layer's ``postinstall.py`` compiles its own ``lib`` folder; run layer after layer, each
run starts a process pool that idles while the small layers finish. Deploy runs each
layer's postinstall with compiling deferred (``postinstall.DEFER_COMPILE``) and then calls
``compile_layers`` once: one interpreter per base runtime (a runtime writes the bytecode
of its own Python version), each feeding every file of all the layers on that runtime to
one process pool, the runtimes' pools running side by side. The files compiled, and the
``.pyc`` written, are the same as the layers' own ``postinstall.py`` would write
(``layer_scripts/compile_bytecode.py``, run by path). Files whose bytecode is already
valid are skipped before any worker starts: those hard-linked from the previous
deployment with their bytecode, and every file of a layer published with ``--bytecode``
(its archive holds unchecked-hash pycs), so deploying such a stack compiles nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from venvlayers.core.errors import DeployError
from venvlayers.core.process import run_process
from venvlayers.layer_scripts import compile_bytecode, postinstall


def lib_folder(layer_path: Path) -> Path:
    """The folder a layer's postinstall compiles ("Lib" on Windows)."""
    return layer_path / ("Lib" if os.name == "nt" else "lib")


def compile_layers(
    layer_paths: Sequence[Path], deployed_paths: Mapping[Path, Path] | None = None
) -> None:
    """Compile the Python files of every layer in ``layer_paths`` (linked, lower layers
    beside them). ``deployed_paths``: where a staged layer will live, for the names the
    bytecode records (default: where it is)."""
    by_runtime: dict[Path, list[str]] = {}
    for layer_path in layer_paths:
        config = postinstall.load_config(layer_path)
        base_python = postinstall.resolve(layer_path, config["base_python"])
        lib = lib_folder(layer_path)
        deployed = (deployed_paths or {}).get(layer_path, layer_path)
        if lib.is_dir():
            by_runtime.setdefault(base_python, []).extend([str(lib), str(lib_folder(deployed))])
    if not by_runtime:
        return
    with ThreadPoolExecutor(len(by_runtime)) as pool:
        for _ in pool.map(lambda item: _compile(*item), sorted(by_runtime.items())):
            pass


def _compile(base_python: Path, folders: list[str]) -> None:
    # -S -B: the compiler needs no site-packages and writes no bytecode of its own
    run_process(
        [base_python, "-S", "-B", compile_bytecode.__file__, *folders],
        what=f"{base_python}: compiling {', '.join(folders)}",
        error=DeployError,
    )
