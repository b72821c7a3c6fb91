"""Tiny, valid wheels (and one sdist) made on the fly, so tests never need PyPI.

``build_wheel`` writes one deterministic wheel. ``make_wheelhouse`` writes the standard
set later tests rely on, including a real shared library (``libshared``) and a real CPython
extension (``extuser``) that links to it without an rpath, so only a correct
``LD_LIBRARY_PATH`` / dynlib setup lets it import.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import textwrap
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .runtime import local_cpython_prefix

ZIP_DATE = (1980, 1, 1, 0, 0, 0)

#: Platform tags other than the host's that fake wheels are made for (cross-platform locks).
OTHER_PLATFORMS = (
    "macosx_11_0_arm64",
    "macosx_11_0_x86_64",
    "win_amd64",
    "win_arm64",
    "manylinux_2_17_aarch64",
)
HOST_PLATFORM = "manylinux_2_17_x86_64"

#: Full local CPython versions whose headers the extension wheel is compiled against.
RUNTIME_FOR_MINOR = {"3.12": "3.12.1", "3.11": "3.11.7"}


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(name: str) -> str:
    """Project name as spelled in wheel file names and .dist-info folders."""
    return re.sub(r"[-_.]+", "_", name)


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _metadata(name: str, version: str, requires: list[str], requires_python: str | None) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires]
    return "\n".join(lines) + "\n\n"


def _zip_entry(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
    info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    executable = arcname.endswith((".so", ".dylib", ".dll", ".pyd"))
    info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
    zf.writestr(info, data)


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    modules: Mapping[str, str | bytes],
    requires: list[str] | None = None,
    tag: str = "py3-none-any",
    requires_python: str | None = None,
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``dest``; same inputs give the same bytes.

    ``modules`` maps paths inside the wheel (``pkg/__init__.py``) to their content.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dist = _dist_name(name)
    dist_info = f"{dist}-{version}.dist-info"
    purelib = tag.endswith("-any")
    files: dict[str, bytes] = {
        path: content.encode("utf-8") if isinstance(content, str) else content
        for path, content in modules.items()
    }
    files[f"{dist_info}/METADATA"] = _metadata(
        name, version, list(requires or []), requires_python
    ).encode()
    wheel_lines = [
        "Wheel-Version: 1.0",
        "Generator: venvlayers-test-rig",
        f"Root-Is-Purelib: {'true' if purelib else 'false'}",
        f"Tag: {tag}",
    ]
    files[f"{dist_info}/WHEEL"] = ("\n".join(wheel_lines) + "\n").encode()
    record_path = f"{dist_info}/RECORD"
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in sorted(files.items())]
    record.append(f"{record_path},,")
    files[record_path] = ("\n".join(record) + "\n").encode()

    wheel = dest / f"{dist}-{version}-{tag}.whl"
    # .dist-info last, RECORD very last, as wheel installers expect
    order = sorted(files, key=lambda p: (p.startswith(dist_info), p == record_path, p))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in order:
            _zip_entry(zf, path, files[path])
    wheel.write_bytes(buffer.getvalue())
    return wheel


_SDIST_BACKEND = '''\
"""In-tree PEP 517 backend (stdlib only) so the sdist builds without an index."""
import base64, hashlib, os, zipfile

NAME, VERSION = "{name}", "{version}"


def _build(directory, metadata_only=False):
    dist_info = f"{{NAME}}-{{VERSION}}.dist-info"
    files = {{
        f"{{NAME}}/__init__.py": b"BUILT_FROM_SDIST = True\\n",
        f"{{dist_info}}/METADATA": f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n\\n".encode(),
        f"{{dist_info}}/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }}
    if metadata_only:
        os.makedirs(os.path.join(directory, dist_info), exist_ok=True)
        for path in ("METADATA", "WHEEL"):
            with open(os.path.join(directory, dist_info, path), "wb") as f:
                f.write(files[f"{{dist_info}}/{{path}}"])
        return dist_info
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
    record.append(f"{{dist_info}}/RECORD,,")
    files[f"{{dist_info}}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{{NAME}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, wheel), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _build(metadata_directory, metadata_only=True)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory)
'''


def build_sdist(dest: Path, name: str, version: str) -> Path:
    """A minimal sdist that builds offline through an in-tree, stdlib-only backend."""
    dest.mkdir(parents=True, exist_ok=True)
    dist = _dist_name(name)
    top = f"{dist}-{version}"
    files = {
        "PKG-INFO": _metadata(name, version, [], None),
        "pyproject.toml": textwrap.dedent(
            f"""\
            [build-system]
            requires = []
            build-backend = "backend"
            backend-path = ["."]

            [project]
            name = "{name}"
            version = "{version}"
            """
        ),
        "backend.py": _SDIST_BACKEND.format(name=dist, version=version),
    }
    sdist = dest / f"{top}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    sdist.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return sdist


_LIBSHARED_C = "int vl_answer(void) { return 42; }\n"

_LIBSHARED_INIT = '''\
"""Ships libvlshared.so in libshared/lib (a stand-in for e.g. a CUDA runtime wheel)."""
from pathlib import Path

LIB_DIR = Path(__file__).parent / "lib"


def lib_dir() -> str:
    return str(LIB_DIR)


def answer() -> int:
    import ctypes

    return ctypes.CDLL(str(LIB_DIR / "libvlshared.so")).vl_answer()
'''

_EXTUSER_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern int vl_answer(void);

static PyObject *answer(PyObject *self, PyObject *args) {
    return PyLong_FromLong(vl_answer());
}

static PyMethodDef methods[] = {
    {"answer", answer, METH_NOARGS, "Return vl_answer() from libvlshared.so."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "extuser", NULL, -1, methods};

PyMODINIT_FUNC PyInit_extuser(void) { return PyModule_Create(&module); }
"""


def _gcc(*args: str) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise FileNotFoundError("gcc is needed to build the libshared/extuser test wheels")
    subprocess.run([gcc, *args], check=True, capture_output=True)


def compile_libshared(build_dir: Path) -> Path:
    """Compile libvlshared.so (soname libvlshared.so) into ``build_dir``."""
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / "vlshared.c"
    source.write_text(_LIBSHARED_C)
    lib = build_dir / "libvlshared.so"
    _gcc("-shared", "-fPIC", "-O2", "-Wl,-soname,libvlshared.so", "-o", str(lib), str(source))
    return lib


def compile_extuser(build_dir: Path, include_dir: Path, lib_dir: Path, soabi: str) -> Path:
    """Compile the extuser extension, linked to libvlshared.so with NO rpath."""
    source = build_dir / "extuser.c"
    source.write_text(_EXTUSER_C)
    ext = build_dir / f"extuser.{soabi}-x86_64-linux-gnu.so"
    _gcc(
        "-shared",
        "-fPIC",
        "-O2",
        f"-I{include_dir}",
        "-o",
        str(ext),
        str(source),
        f"-L{lib_dir}",
        "-lvlshared",
    )
    return ext


def python_include_dir(python_version: str) -> Path:
    """Headers for ``python_version`` (``3.12``) from the local CPython the runtime uses."""
    full = RUNTIME_FOR_MINOR.get(python_version)
    prefix = local_cpython_prefix(full) if full else None
    if prefix is None:
        raise FileNotFoundError(f"no local CPython {python_version} to compile extuser against")
    return prefix / "include" / f"python{python_version}"


@dataclass(frozen=True)
class Wheelhouse:
    """A folder of wheels/sdists; ``files`` maps normalized project name -> file paths."""

    path: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    python_version: str = "3.12"

    def versions(self, project: str) -> list[str]:
        found = {p.name.split("-")[1] for p in self.files.get(normalize(project), [])}
        return sorted(found)

    def filenames(self, project: str) -> list[str]:
        return sorted(p.name for p in self.files.get(normalize(project), []))


def make_wheelhouse(dest: Path, python_version: str = "3.12") -> Wheelhouse:
    """Write the standard test wheelhouse into ``dest`` (see module docstring)."""
    files: dict[str, list[Path]] = {}

    def add(path: Path, project: str) -> None:
        files.setdefault(normalize(project), []).append(path)

    def pure(name: str, version: str, requires: list[str] | None = None) -> None:
        module = f'"""Test package {name}."""\n__version__ = "{version}"\n'
        wheel = build_wheel(
            dest, name, version, modules={f"{name}/__init__.py": module}, requires=requires
        )
        add(wheel, name)

    for version in ("1.0.0", "1.1.0", "2.0.0"):
        pure("alpha", version)
    pure("beta", "1.0.0", ["alpha>=1.0"])
    pure("gamma", "1.0.0")
    pure("delta", "1.0.0", ["gamma"])
    pure("epsilon", "1.0")
    pure("zeta", "1.0", ["alpha<2"])

    nodot = python_version.replace(".", "")
    abi, soabi = f"cp{nodot}", f"cpython-{nodot}"
    with tempfile.TemporaryDirectory(prefix="vl-wheelhouse-build-") as tmp:
        build_dir = Path(tmp)
        lib = compile_libshared(build_dir)
        ext = compile_extuser(build_dir, python_include_dir(python_version), build_dir, soabi)
        lib_bytes, ext_bytes = lib.read_bytes(), ext.read_bytes()

    libshared_real: dict[str, str | bytes] = {
        "libshared/__init__.py": _LIBSHARED_INIT,
        "libshared/lib/libvlshared.so": lib_bytes,
    }
    add(
        build_wheel(
            dest, "libshared", "1.0.0", modules=libshared_real, tag=f"py3-none-{HOST_PLATFORM}"
        ),
        "libshared",
    )
    ext_module = f"extuser.{soabi}-x86_64-linux-gnu.so"
    extuser_tag = f"{abi}-{abi}-{HOST_PLATFORM}"
    add(
        build_wheel(
            dest,
            "extuser",
            "1.0.0",
            modules={ext_module: ext_bytes},
            requires=["libshared"],
            tag=extuser_tag,
        ),
        "extuser",
    )
    for platform in OTHER_PLATFORMS:
        # tiny placeholders: they only have to exist so cross-platform locks resolve
        fake = f"# placeholder libshared for {platform}; not runnable\n"
        add(
            build_wheel(
                dest,
                "libshared",
                "1.0.0",
                modules={"libshared/__init__.py": fake},
                tag=f"py3-none-{platform}",
            ),
            "libshared",
        )
        fake_ext = {
            "extuser/__init__.py": f"raise ImportError('placeholder extuser for {platform}')\n"
        }
        add(
            build_wheel(
                dest,
                "extuser",
                "1.0.0",
                modules=fake_ext,
                requires=["libshared"],
                tag=f"{abi}-{abi}-{platform}",
            ),
            "extuser",
        )

    only_linux = {"linuxonly/__init__.py": "PLATFORM = 'linux_x86_64'\n"}
    add(
        build_wheel(
            dest, "linuxonly", "1.0.0", modules=only_linux, tag=f"py3-none-{HOST_PLATFORM}"
        ),
        "linuxonly",
    )
    new_glibc = {"newglibc/__init__.py": "NEEDS = 'glibc 2.34'\n"}
    add(
        build_wheel(
            dest, "newglibc", "1.0.0", modules=new_glibc, tag="py3-none-manylinux_2_34_x86_64"
        ),
        "newglibc",
    )
    add(build_sdist(dest, "sdistonly", "1.0.0"), "sdistonly")
    return Wheelhouse(path=dest, files=files, python_version=python_version)
