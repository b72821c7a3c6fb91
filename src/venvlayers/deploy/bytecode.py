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
That check runs in this process, against the runtime's cache tag and magic number (read
from its deployed ``os`` bytecode), so a runtime with nothing to compile is never
started, whatever its Python version. A few files (an app-only update's) are compiled in
this process too, when it writes exactly what the runtime would (same tag and magic):
the update then starts no interpreter.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
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


#: At most this many files are compiled in this process (when it writes the same bytecode
#: as the runtime would); more go to the runtime's own process pool.
IN_PROCESS_FILES = 64


def _compile(base_python: Path, folders: list[str]) -> None:
    if _checked_here(base_python, folders):
        return
    # -S -B: the compiler needs no site-packages and writes no bytecode of its own
    run_process(
        [base_python, "-S", "-B", compile_bytecode.__file__, *folders],
        what=f"{base_python}: compiling {', '.join(folders)}",
        # killed with this process: a killed deploy leaves no compiler in its staging
        env={**os.environ, compile_bytecode.PARENT_PID: str(os.getpid())},
        error=DeployError,
    )


def _checked_here(base_python: Path, folders: list[str]) -> bool:
    """Whether this process did the work, sparing the runtime's start: every file's
    bytecode found valid for the runtime (its cache tag and magic number read from its own
    deployed ``os`` bytecode: a ``--bytecode`` stack, of any Python version), or a few
    files compiled here when this interpreter writes exactly what ``base_python`` would
    (same tag and magic; no ``-O``): an app-only update."""
    runtime = runtime_bytecode(base_python)
    if runtime is None:
        return False
    tag, magic = runtime
    jobs = compile_bytecode.files_to_compile(folders)
    todo = [job for job in jobs if not compile_bytecode.up_to_date(job[0], tag, magic)]
    if not todo:
        return True
    same = tag == sys.implementation.cache_tag and magic == importlib.util.MAGIC_NUMBER
    if sys.flags.optimize or not same or len(todo) > IN_PROCESS_FILES:
        return False
    for job in todo:
        compile_bytecode.compile_one(job)
    return True


_OS_PYC = re.compile(r"os\.([a-z]+-[0-9]+)\.pyc")


def runtime_bytecode(base_python: Path) -> tuple[str, bytes] | None:
    """The cache tag and magic number of ``base_python``'s bytecode, from the runtime's own
    deployed ``os`` pyc (None: it has none, it is compiled by this pass)."""
    root = base_python.parent if os.name == "nt" else base_python.parent.parent
    libs = [root / "Lib"] if os.name == "nt" else sorted((root / "lib").glob("python3*"))
    for lib in libs:
        try:
            names = sorted(os.listdir(lib / "__pycache__"))
        except OSError:
            continue
        for name in names:
            if found := _OS_PYC.fullmatch(name):
                try:
                    with (lib / "__pycache__" / name).open("rb") as pyc:
                        magic = pyc.read(4)
                except OSError:
                    continue
                if len(magic) == 4:
                    return found[1], magic
    return None
