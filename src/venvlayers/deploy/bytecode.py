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
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from venvlayers.core.errors import DeployError
from venvlayers.core.process import run_process
from venvlayers.layer_scripts import postinstall

# Run by each base runtime with (lib folder, folder it will be deployed as) pairs as
# arguments: compileall's own walk (compile_dir's choices: every *.py in sorted order,
# __pycache__ and links to folders skipped) feeding one pool; the .pyc name the deployed
# path (a deploy compiles in staging), as the layer's postinstall does.
_COMPILE_SCRIPT = """\
import compileall, importlib.util, os, struct, sys
from concurrent.futures import ProcessPoolExecutor
def up_to_date(path):
    # compileall's own test (timestamp pyc: magic, flags 0, source mtime), made here so
    # a pass over unchanged files starts no pool: reused files brought their bytecode
    try:
        mtime = int(os.stat(path).st_mtime)
        with open(importlib.util.cache_from_source(path), "rb") as pyc:
            head = pyc.read(12)
    except (OSError, ValueError):
        return False
    return head == struct.pack("<4sLL", importlib.util.MAGIC_NUMBER, 0, mtime & 0xFFFFFFFF)
jobs = []
pairs = sys.argv[1:]
for folder, deployed in zip(pairs[::2], pairs[1::2]):
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        ddir = os.path.join(deployed, os.path.relpath(root, folder))
        jobs += [(os.path.join(root, n), ddir) for n in sorted(names) if n.endswith(".py")]
jobs = [job for job in jobs if not up_to_date(job[0])]
def compile_one(job):
    return compileall.compile_file(job[0], ddir=os.path.normpath(job[1]), quiet=2)
workers = min(len(jobs) // 64 + 1, os.cpu_count() or 1)
if workers <= 1:
    for job in jobs:
        compile_one(job)
else:
    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(compile_one, jobs, chunksize=32):
            pass
"""


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
    run_process(
        [base_python, "-c", _COMPILE_SCRIPT, *folders],
        what=f"{base_python}: compiling {', '.join(folders)}",
        error=DeployError,
    )
