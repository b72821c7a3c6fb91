"""Bytecode for deployed layers: every layer's Python files compiled at once, on every core.

A layer's ``postinstall.py`` compiles its own ``lib`` folder; run layer after layer, each
run starts a process pool that idles while the small layers finish. Deploy runs each
layer's postinstall with compiling deferred (``postinstall.DEFER_COMPILE``) and then calls
``compile_layers`` once: one interpreter per base runtime (a runtime writes the bytecode
of its own Python version), each feeding every file of all the layers on that runtime to
one process pool, the runtimes' pools running side by side. The files compiled, and the
``.pyc`` written, are the same as the layers' own ``postinstall.py`` would write.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from venvlayers import postinstall
from venvlayers.errors import DeployError
from venvlayers.process import run_process

# Run by each base runtime with the lib folders as arguments: compileall's own walk
# (compile_dir's choices: every *.py in sorted order, __pycache__ and links to folders
# skipped) feeding one pool.
_COMPILE_SCRIPT = """\
import compileall, functools, os, sys
from concurrent.futures import ProcessPoolExecutor
files = []
for folder in sys.argv[1:]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".py")]
compile_one = functools.partial(compileall.compile_file, quiet=2)
workers = min(len(files) // 64 + 1, os.cpu_count() or 1)
if workers <= 1:
    for name in files:
        compile_one(name)
else:
    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(compile_one, files, chunksize=32):
            pass
"""


def lib_folder(layer_path: Path) -> Path:
    """The folder a layer's postinstall compiles ("Lib" on Windows)."""
    return layer_path / ("Lib" if os.name == "nt" else "lib")


def compile_layers(layer_paths: Sequence[Path]) -> None:
    """Compile the Python files of every layer in ``layer_paths`` (deployed and linked)."""
    by_runtime: dict[Path, list[str]] = {}
    for layer_path in layer_paths:
        config = postinstall.load_config(layer_path)
        base_python = postinstall.resolve(layer_path, config["base_python"])
        lib = lib_folder(layer_path)
        if lib.is_dir():
            by_runtime.setdefault(base_python, []).append(str(lib))
    if not by_runtime:
        return
    with ThreadPoolExecutor(len(by_runtime)) as pool:
        for _ in pool.map(lambda item: _compile(*item), sorted(by_runtime.items())):
            pass


def _compile(base_python: Path, folders: list[str]) -> None:
    run_process(
        [base_python, "-c", _COMPILE_SCRIPT, *folders],
        what=f"{base_python}: compiling {', '.join(folders)}",
        error=DeployError,
    )
