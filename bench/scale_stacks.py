"""The scale stacks of the benchmark (``bench/run --stack torch|scale|scale-6g``).

- ``torch``: CPython 3.11 with a PyTorch framework layer from the torch 2.13.0 CPU wheel
  this kind of machine keeps on disk (found through pip: ``pip download`` with no index
  reads pip's own configuration and find-links; ``VENVLAYERS_BENCH_TORCH_WHEEL`` names the
  file instead), given to both tools with ``--local-wheels``; its dependencies come from
  PyPI as of ``TORCH_EXCLUDE_NEWER``.
- ``scale`` (~2 GB unpacked) and ``scale-6g`` (~6 GB, opt-in): a framework layer generated
  to look like the big CUDA ones: shared libraries of tens to hundreds of MB whose bytes
  compress like real machine code (xz ratio ~0.36: random, low-entropy and repeated
  blocks), and thousands of small ``.py`` files, in several wheels, built locally and used
  with ``--local-wheels --no-index`` (no index at all). ``scale-mini`` (~20 MB) is the
  same recipe at 1/100, to try the scale rows in minutes.

Every stack has an app layer over the framework that pins a tiny local package,
``vlbench-patch``; the "one small package changed" update moves that pin from 1.0 to 1.1,
and both tools then lock, build and publish again before the deploy is timed. The
framework itself also pins a tiny pure-Python package, ``vlbench-util``; the "one small
package in the framework changed" update moves that pin from 1.0 to 1.1, so the big
framework layer is locked, built and published again (untimed) before the deploys.

Generated wheels are deterministic (a seeded generator, fixed zip dates and attributes),
built once into the benchmark's work folder (``<work>/scale/<name>/``, never the repo) and
reused while their recipe (``RECIPE``) is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SCALE_STACKS = ("torch", "scale", "scale-6g", "scale-mini")
#: How many times ``LIBRARIES`` and ``PY_PACKAGES`` each generated stack holds.
FACTORS = {"scale": 1.0, "scale-6g": 3.0, "scale-mini": 0.01}
TORCH_VERSION = "2.13.0"
TORCH_EXCLUDE_NEWER = "2026-11-01T00:00:00Z"
PATCH = "vlbench-patch"
UTIL = "vlbench-util"
PLATFORM_TAG = "manylinux_2_17_x86_64"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
BLOCK = 64 << 10
#: Bump when what the generator writes changes (the cached wheels are then rebuilt).
#: 2: modules whose parameters repeated a name (69 % of them) no longer fail to compile;
#: a deploy recompiled those on every update, and no pyc of theirs was ever written.
RECIPE = 2

#: Shared libraries of the 2 GB framework (MB), spread over wheels like NVIDIA's are.
LIBRARIES: dict[str, list[int]] = {
    "vlbench-blas": [420, 160, 48],
    "vlbench-dnn": [300, 150, 64, 24],
    "vlbench-fft": [240, 100, 32],
    "vlbench-runtime": [180, 80, 40, 16, 8, 4, 4, 4, 4],
    "vlbench-comm": [120, 40, 12],
}
#: The pure-Python part: packages x modules (modules of 2-30 KB).
PY_PACKAGES = 40
PY_MODULES = 100


@dataclass(frozen=True)
class ScaleStack:
    """A generated stack: its spec folder, the wheels both tools get, and their options."""

    name: str
    folder: Path
    wheels: Path
    index_args: list[str]
    env: dict[str, str] = field(default_factory=dict)


# -- deterministic content ----------------------------------------------------------------------

_LOW_ENTROPY = bytes((i * 37) % 16 * 11 for i in range(256))  # 256 byte values -> 16


def library_bytes(seed: str, size: int) -> Iterator[bytes]:
    """``size`` bytes like a compiled library: an ELF header, then 64 KiB blocks that are
    random (30 %), low-entropy (10 %, 16 symbols) or a copy of one of the last 64 blocks
    (60 %): xz preset 6 keeps 0.36 of them at ~5 MB/s on one core, about as it does with
    real ``.so`` files."""
    rng = random.Random(seed)
    header = b"\x7fELF\x02\x01\x01" + bytes(57)
    recent: list[bytes] = []
    written = 0
    first = True
    while written < size:
        kind = rng.random()
        if kind < 0.30 or not recent:
            block = rng.randbytes(BLOCK)
        elif kind < 0.40:
            block = rng.randbytes(BLOCK).translate(_LOW_ENTROPY)
        else:
            block = recent[rng.randrange(len(recent))]
        recent.append(block)
        del recent[:-64]
        if first:
            block = header + block[len(header) :]
            first = False
        block = block[: size - written]
        written += len(block)
        yield block


_WORDS = [
    "tensor",
    "shape",
    "device",
    "stream",
    "kernel",
    "launch",
    "handle",
    "config",
    "cache",
    "buffer",
    "layout",
    "stride",
    "index",
    "graph",
    "node",
    "plan",
    "workspace",
    "scale",
    "bias",
    "weight",
    "grad",
    "dtype",
    "pool",
    "event",
    "sync",
]


def module_source(seed: str) -> bytes:
    """A plausible Python module of 2-30 KB (docstrings, functions, classes)."""
    rng = random.Random(seed)
    parts = [f'"""Generated module {seed} for the venvlayers scale benchmark."""\n\n']
    parts.append("from __future__ import annotations\n\nimport os\n\n")
    target = rng.randrange(2_000, 30_000)
    size = sum(len(p) for p in parts)
    n = 0
    while size < target:
        a, b, c = rng.sample(_WORDS, 3)  # distinct: a function's parameters must differ
        text = textwrap.dedent(
            f'''
            def {a}_{b}_{n}({c}, {a}=None, *, {b}_{c}={rng.randrange(1000)}):
                """Return the {a} {b} of {c} ({rng.randrange(10**6)})."""
                if {a} is None:
                    {a} = os.environ.get("VLBENCH_{a.upper()}_{n}", "{b}")
                values = [{c}, {a}, {b}_{c}]
                for item in range({rng.randrange(2, 64)}):
                    values.append(item * {rng.randrange(1, 97)} + len(str({c})))
                return values


            class {a.title()}{b.title()}{n}:
                {c}: int = {rng.randrange(10**4)}

                def {c}_{a}(self, value: int) -> int:
                    return value * self.{c} + {rng.randrange(10**3)}
            '''
        )
        parts.append(text)
        size += len(text)
        n += 1
    return "".join(parts).encode()


# -- wheels -------------------------------------------------------------------------------------


def _record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class WheelWriter:
    """A wheel written file by file, streaming (a file never held whole in memory)."""

    def __init__(self, folder: Path, name: str, version: str, tag: str) -> None:
        self.dist = name.replace("-", "_")
        self.name, self.version, self.tag = name, version, tag
        self.path = folder / f"{self.dist}-{version}-py3-none-{tag}.whl"
        self._tmp = self.path.with_suffix(".partial")
        self._zip = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
        self._record: list[str] = []

    def add(self, arcname: str, blocks: Iterator[bytes] | bytes, mode: int = 0o644) -> None:
        info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        digest, size = hashlib.sha256(), 0
        with self._zip.open(info, "w", force_zip64=True) as out:
            for block in [blocks] if isinstance(blocks, bytes) else blocks:
                out.write(block)
                digest.update(block)
                size += len(block)
        self._record.append(f"{arcname},{_record_hash(digest.digest())},{size}")

    def close(self) -> Path:
        info = f"{self.dist}-{self.version}.dist-info"
        metadata = f"Metadata-Version: 2.1\nName: {self.name}\nVersion: {self.version}\n"
        wheel = (
            "Wheel-Version: 1.0\nGenerator: venvlayers-bench\nRoot-Is-Purelib: "
            f"{'true' if self.tag == 'any' else 'false'}\nTag: py3-none-{self.tag}\n"
        )
        self.add(f"{info}/METADATA", metadata.encode())
        self.add(f"{info}/WHEEL", wheel.encode())
        record = "\n".join([*self._record, f"{info}/RECORD,,"]) + "\n"
        entry = zipfile.ZipInfo(f"{info}/RECORD", date_time=ZIP_DATE)
        entry.external_attr = 0o100644 << 16
        self._zip.writestr(entry, record, compress_type=zipfile.ZIP_DEFLATED)
        self._zip.close()
        self._tmp.rename(self.path)
        return self.path


def patch_wheels(folder: Path) -> None:
    """The tiny packages the update rows move (1.0 and 1.1 of each): ``vlbench-patch``
    (the app's) and ``vlbench-util`` (the framework's). Only missing wheels are written
    (the same bytes every time), so a folder of wheels made before one was added gains it
    without its big wheels being made again."""
    for project in (PATCH, UTIL):
        package = project.replace("-", "_")
        for version in ("1.0", "1.1"):
            if (folder / f"{package}-{version}-py3-none-any.whl").is_file():
                continue
            wheel = WheelWriter(folder, project, version, "any")
            module = f'"""A tiny package the benchmark updates."""\n\nVERSION = "{version}"\n'
            wheel.add(f"{package}/__init__.py", module.encode())
            wheel.close()


def framework_wheels(folder: Path, factor: float) -> None:
    """The generated framework: ``LIBRARIES`` x ``factor`` MB of shared libraries and
    ``PY_PACKAGES`` x ``factor`` packages of Python modules (at least one)."""
    for project, sizes in LIBRARIES.items():
        package = project.replace("-", "_")
        wheel = WheelWriter(folder, project, "1.0", PLATFORM_TAG)
        wheel.add(f"{package}/__init__.py", b'"""Shared libraries (generated)."""\n')
        for i, mb in enumerate(sizes):
            name = f"{package}/lib/lib{package}_{i}.so.1"
            wheel.add(name, library_bytes(name, int(mb * factor * 10**6)), mode=0o755)
        wheel.close()
    wheel = WheelWriter(folder, "vlbench-python", "1.0", "any")
    wheel.add("vlbench_python/__init__.py", b'"""Pure-Python part (generated)."""\n')
    for p in range(max(1, round(PY_PACKAGES * factor))):
        wheel.add(f"vlbench_python/pkg{p:03d}/__init__.py", b"")
        for m in range(PY_MODULES):
            name = f"vlbench_python/pkg{p:03d}/mod{m:03d}.py"
            wheel.add(name, module_source(name))
    wheel.close()


def _cached(folder: Path, key: dict[str, object], make: object) -> Path:
    """``folder`` made by ``make(partial_folder)`` unless it exists with the same ``key``."""
    stamp = folder / "recipe.json"
    wanted = json.dumps(key, sort_keys=True)
    if stamp.is_file() and stamp.read_text() == wanted:
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    partial.mkdir(parents=True)
    make(partial)  # type: ignore[operator]
    (partial / "recipe.json").write_text(wanted)
    partial.rename(folder)
    return folder


# -- the torch wheel --------------------------------------------------------------------------


def torch_wheel() -> Path:
    """The torch 2.13.0 CPU wheel for CPython 3.11 on this machine's disk."""
    named = os.environ.get("VENVLAYERS_BENCH_TORCH_WHEEL")
    if named:
        return Path(named)
    with tempfile.TemporaryDirectory() as tmp:
        # no index: pip finds it only where its own configuration points (find-links)
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--dest",
                tmp,
                f"torch=={TORCH_VERSION}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        found = sorted(Path(tmp).glob("torch-*.whl"))
        if completed.returncode != 0 or not found:
            for candidate in sorted(Path("/opt/wheels").glob(f"torch-{TORCH_VERSION}*cp311*.whl")):
                return candidate
            sys.exit(
                f"no torch {TORCH_VERSION} wheel for CPython 3.11 on this disk (pip: "
                f"{completed.stderr.strip()[-200:]}); set VENVLAYERS_BENCH_TORCH_WHEEL"
            )
        return found[0]


# -- the stacks ---------------------------------------------------------------------------------

RUNTIME = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@3.11.7"
requirements = []
"""


def _spec(framework: str, requirements: list[str], app_import: str) -> tuple[str, str]:
    spec = (
        f"# Benchmark stack generated by bench/scale_stacks.py: a {framework} framework.\n"
        + RUNTIME
        + f"""
[[frameworks]]
name = "{framework}"
runtime = "cpython-3.11"
requirements = {json.dumps([*requirements, f"{UTIL}==1.0"])}
platforms = ["linux_x86_64"]

[[applications]]
name = "infer"
launch_module = "launch/infer.py"
frameworks = ["{framework}"]
requirements = ["{PATCH}==1.0"]
platforms = ["linux_x86_64"]
"""
    )
    launch = (
        f'"""The scale benchmark\'s app."""\n\nimport vlbench_patch\nimport vlbench_util\n\n'
        f"import {app_import}\n"
    )
    return spec, launch


def _write_stack(folder: Path, spec: str, launch: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "launch").mkdir(parents=True)
    (folder / "venvstacks.toml").write_text(spec)
    (folder / "launch" / "infer.py").write_text(launch)


def prepare(name: str, work: Path, say: object = print) -> ScaleStack:
    """The stack ``name``: its spec folder and wheels under ``<work>/scale/``."""
    root = work / "scale" / name
    folder = root / "stack"
    if name == "torch":
        source = torch_wheel()

        def make(partial: Path) -> None:
            os.link(source, partial / source.name) if _same_fs(source, partial) else shutil.copy(
                source, partial / source.name
            )
            patch_wheels(partial)

        wheels = _cached(root / "wheels", {"recipe": RECIPE, "torch": source.name}, make)
        patch_wheels(wheels)  # a folder made before vlbench-util was added
        spec, launch = _spec("torch", [f"torch=={TORCH_VERSION}+cpu"], "torch")
        _write_stack(folder, spec, launch)
        return ScaleStack(
            name,
            folder,
            wheels,
            ["--local-wheels", str(wheels)],
            {"UV_EXCLUDE_NEWER": TORCH_EXCLUDE_NEWER},
        )
    factor = FACTORS[name]

    def generate(partial: Path) -> None:
        say(
            f"[{name}] generating the framework's wheels ({factor * 2.1:g} GB unpacked) in {partial}"
        )  # type: ignore[operator]
        framework_wheels(partial, factor)
        patch_wheels(partial)

    # the key of the stacks made before scale-mini: an int factor, so their wheels are kept
    key = int(factor) if factor == int(factor) else factor
    wheels = _cached(root / "wheels", {"recipe": RECIPE, "factor": key}, generate)
    patch_wheels(wheels)  # a folder made before vlbench-util was added
    projects = [*LIBRARIES, "vlbench-python"]
    spec, launch = _spec("generated", [f"{p}==1.0" for p in projects], "vlbench_python")
    _write_stack(folder, spec, launch)
    return ScaleStack(name, folder, wheels, ["--local-wheels", str(wheels), "--no-index"])


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def bump_patch(stack: Path) -> str:
    """The small-package update: the app's pin of ``vlbench-patch`` moves to 1.1. Returns
    the app's layer name."""
    spec = stack / "venvstacks.toml"
    text = spec.read_text()
    if f'"{PATCH}==1.0"' not in text:
        raise ValueError(f"{spec}: no {PATCH}==1.0 pin to move")
    spec.write_text(text.replace(f'"{PATCH}==1.0"', f'"{PATCH}==1.1"'))
    return "app-infer"


def bump_framework_package(stack: Path) -> str:
    """The small-package update inside the framework: its pin of ``vlbench-util`` moves to
    1.1. Returns the framework's layer name."""
    spec = stack / "venvstacks.toml"
    text = spec.read_text()
    if f'"{UTIL}==1.0"' not in text:
        raise ValueError(f"{spec}: no {UTIL}==1.0 pin to move")
    spec.write_text(text.replace(f'"{UTIL}==1.0"', f'"{UTIL}==1.1"'))
    names = [
        block.split('name = "', 1)[1].split('"', 1)[0] for block in text.split("[[frameworks]]")[1:]
    ]
    return f"framework-{names[0]}"


def unpacked_bytes(wheels: Path) -> int:
    """What the framework's wheels hold, uncompressed."""
    total = 0
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            total += sum(i.file_size for i in zf.infolist())
    return total
