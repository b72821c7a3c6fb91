"""The offline rig works for real: runtimes install through uv, wheels install, auth holds."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from rig import run_uv
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror, find_patchelf, make_runtime_archive
from rig.wheels import OTHER_PLATFORMS, Wheelhouse, build_sdist, build_wheel

from venvlayers.build.runtime_mirror import (
    RuntimeMirrorError,
    downloads_entry,
    entry_key,
    write_downloads_json,
)

# Any attempt to reach the network (GitHub) goes to a closed local port and fails.
NO_NETWORK = {
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


def _python(exe: Path, code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(exe), "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _install_runtime(mirror: RuntimeMirror, tmp_path: Path) -> Path:
    """``uv python install`` the mirror's main runtime offline; return its folder."""
    install_dir = tmp_path / "python"
    env = {
        **NO_NETWORK,
        "UV_PYTHON_INSTALL_DIR": str(install_dir),
        "UV_PYTHON_BIN_DIR": str(tmp_path / "python-bin"),
    }
    run_uv(["python", "install", mirror.install_keys[0]], env=env)
    runtime = install_dir / mirror.install_keys[0]
    assert (runtime / "bin" / "python3").exists(), sorted(install_dir.iterdir())
    return runtime


def _venv(python: Path | str, dest: Path) -> Path:
    run_uv(["venv", "-q", "--python", str(python), str(dest)])
    return dest / "bin" / "python"


# -- runtime mirror (product module) -------------------------------------------------------


def test_downloads_entry_describes_archive_for_uv(tmp_path: Path) -> None:
    archive = tmp_path / "cpython-3.12.1-install_only.tar.gz"
    archive.write_bytes(b"not really a tarball")
    entry = downloads_entry(archive, version="3.12.1")
    assert entry == {
        "name": "cpython",
        "arch": {"family": "x86_64", "variant": None},
        "os": "linux",
        "libc": "gnu",
        "major": 3,
        "minor": 12,
        "patch": 1,
        "prerelease": "",
        "url": archive.resolve().as_uri(),
        "sha256": hashlib.sha256(b"not really a tarball").hexdigest(),
        "variant": None,
    }
    assert entry_key(entry) == "cpython-3.12.1-linux-x86_64-gnu"

    mac = downloads_entry(
        archive,
        version="3.13.0rc2",
        url="https://mirror.example/cpython.tar.gz",
        os_name="darwin",
        arch="aarch64",
        libc="none",
    )
    assert (mac["prerelease"], mac["url"]) == ("rc2", "https://mirror.example/cpython.tar.gz")
    assert entry_key(mac) == "cpython-3.13.0rc2-darwin-aarch64-none"

    first = write_downloads_json([entry, mac], tmp_path / "a.json").read_bytes()
    second = write_downloads_json([mac, entry], tmp_path / "b.json").read_bytes()
    assert first == second and first.endswith(b"\n")
    assert sorted(json.loads(first)) == [
        "cpython-3.12.1-linux-x86_64-gnu",
        "cpython-3.13.0rc2-darwin-aarch64-none",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "3.12"}, "not a full CPython version"),
        ({"version": "3.12.1", "os_name": "macos"}, "os 'macos'"),
        ({"version": "3.12.1", "arch": "amd64"}, "arch 'amd64'"),
        ({"version": "3.12.1", "url": "ftp://mirror/x.tar.gz"}, "must be a file://"),
    ],
)
def test_downloads_entry_rejects_what_uv_would_skip(
    tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    archive = tmp_path / "runtime.tar.gz"
    archive.write_bytes(b"x")
    with pytest.raises(RuntimeMirrorError, match=message):
        downloads_entry(archive, **kwargs)


def test_downloads_json_refuses_missing_archive_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(RuntimeMirrorError, match="does not exist"):
        downloads_entry(tmp_path / "missing.tar.gz", version="3.12.1")
    archive = tmp_path / "runtime.tar.gz"
    archive.write_bytes(b"x")
    entry = downloads_entry(archive, version="3.12.1")
    with pytest.raises(RuntimeMirrorError, match="two runtime archives"):
        write_downloads_json([entry, entry], tmp_path / "downloads.json")
    assert not (tmp_path / "downloads.json").exists()


# -- relocatable runtime through uv ---------------------------------------------------------


def test_without_mirror_uv_finds_no_python_download(tmp_path: Path) -> None:
    # the session isolation points uv at an empty downloads list: never at GitHub
    result = run_uv(
        ["python", "install", "cpython-3.12.1"],
        env={"UV_PYTHON_INSTALL_DIR": str(tmp_path)},
        check=False,
    )
    assert result.returncode != 0
    assert "No download found" in result.stderr


@pytest.mark.slow
def test_runtime_installs_offline_and_runs_after_moving(
    runtime_mirror: RuntimeMirror, local_index: SimpleIndex, tmp_path: Path
) -> None:
    runtime = _install_runtime(runtime_mirror, tmp_path)
    assert _python(runtime / "bin" / "python3", "import sys; print(sys.version.split()[0])") == (
        "3.12.1"
    )
    # nothing the source prefix had installed comes along
    assert list((runtime / "lib" / "python3.12" / "site-packages").iterdir()) == []

    moved = tmp_path / "elsewhere" / "runtime"
    moved.parent.mkdir()
    shutil.move(runtime, moved)
    probe = (
        "import sys, ssl, sqlite3, ctypes\n"
        "libs = {l.split()[-1] for l in open('/proc/self/maps') if 'libpython' in l}\n"
        "print(sys.prefix); print(*sorted(libs), sep='\\n')"
    )
    prefix, *libpython = _python(moved / "bin" / "python3", probe).splitlines()
    assert Path(prefix) == moved
    # libpython is loaded from the moved folder, not from the source build
    assert libpython and all(Path(lib).is_relative_to(moved) for lib in libpython), libpython

    venv_python = _venv(moved / "bin" / "python3", tmp_path / "venv")
    assert Path(_python(venv_python, "import sys; print(sys.base_prefix)")) == moved
    run_uv(
        ["pip", "install", "--python", venv_python, "--index-url", local_index.url, "alpha==1.1.0"]
    )
    assert _python(venv_python, "import alpha; print(alpha.__version__)") == "1.1.0"


@pytest.mark.slow
def test_runtime_archive_is_deterministic_relocatable_and_small(
    runtime_mirror_session: RuntimeMirror, tmp_path: Path
) -> None:
    cached = runtime_mirror_session.archives["3.12.1"]
    source = Path("/root/.pyenv/versions/3.12.1")
    if not source.exists():
        pytest.skip("determinism check rebuilds from the pyenv CPython 3.12.1")
    rebuilt = make_runtime_archive(source, "3.12.1", tmp_path)
    assert rebuilt.name == "cpython-3.12.1-x86_64-unknown-linux-gnu-install_only.tar.gz"
    assert rebuilt.read_bytes() == cached.read_bytes()

    with tarfile.open(cached) as tar:
        names = tar.getnames()
        tar.extract("python/bin/python3.12", tmp_path / "x", filter="data")
    assert {name.split("/")[0] for name in names} == {"python"}
    for left_out in ("/test/", "/idlelib/", "/tkinter/", "/turtledemo/", "/__pycache__/"):
        assert not any(left_out in name for name in names), left_out
    assert "python/lib/python3.12/site-packages" in names
    assert not any(name.startswith("python/lib/python3.12/site-packages/") for name in names)
    rpath = subprocess.run(
        [str(find_patchelf()), "--print-rpath", str(tmp_path / "x/python/bin/python3.12")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert rpath == "$ORIGIN/../lib"


@pytest.mark.slow
def test_runtime_mirror_311_lists_both_runtimes(
    runtime_mirror_311: RuntimeMirror, tmp_path: Path
) -> None:
    assert runtime_mirror_311.python_implementation == "cpython@3.11.7"
    assert runtime_mirror_311.python_implementations == ["cpython@3.11.7", "cpython@3.12.1"]
    listed = json.loads(runtime_mirror_311.downloads_json.read_text())
    assert sorted(listed) == ["cpython-3.11.7-linux-x86_64-gnu", "cpython-3.12.1-linux-x86_64-gnu"]
    assert (
        os.environ["UV_PYTHON_DOWNLOADS_JSON_URL"]
        == runtime_mirror_311.env["UV_PYTHON_DOWNLOADS_JSON_URL"]
    )
    runtime = _install_runtime(runtime_mirror_311, tmp_path)
    version = _python(runtime / "bin" / "python3", "import sys; print(sys.version.split()[0])")
    assert version == "3.11.7"


# -- wheels -----------------------------------------------------------------------------------


def test_build_wheel_is_deterministic_with_valid_record(tmp_path: Path) -> None:
    modules: dict[str, str | bytes] = {"pkg_x/__init__.py": "X = 1\n", "pkg_x/data.bin": b"\0\1"}
    kwargs = {"requires": ["alpha>=1"], "requires_python": ">=3.9"}
    one = build_wheel(tmp_path / "a", "Pkg.X", "0.1", modules=modules, **kwargs)  # type: ignore[arg-type]
    two = build_wheel(tmp_path / "b", "Pkg.X", "0.1", modules=modules, **kwargs)  # type: ignore[arg-type]
    assert one.name == "Pkg_X-0.1-py3-none-any.whl"
    assert one.read_bytes() == two.read_bytes()
    with zipfile.ZipFile(one) as zf:
        names = zf.namelist()
        assert names[-1] == "Pkg_X-0.1.dist-info/RECORD"
        metadata = zf.read("Pkg_X-0.1.dist-info/METADATA").decode()
        assert "Requires-Dist: alpha>=1" in metadata
        assert "Requires-Python: >=3.9" in metadata
        for line in zf.read(names[-1]).decode().splitlines():
            path, digest, size = line.split(",")
            if path == names[-1]:
                continue
            data = zf.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode() and int(size) == len(data)


def test_wheelhouse_has_every_platform_for_cross_platform_locks(wheelhouse: Wheelhouse) -> None:
    assert wheelhouse.versions("alpha") == ["1.0.0", "1.1.0", "2.0.0"]
    platforms = ("manylinux_2_17_x86_64", *OTHER_PLATFORMS)
    assert wheelhouse.filenames("libshared") == sorted(
        f"libshared-1.0.0-py3-none-{p}.whl" for p in platforms
    )
    assert wheelhouse.filenames("extuser") == sorted(
        f"extuser-1.0.0-cp312-cp312-{p}.whl" for p in platforms
    )
    assert wheelhouse.filenames("linuxonly") == [
        "linuxonly-1.0.0-py3-none-manylinux_2_17_x86_64.whl"
    ]
    assert wheelhouse.filenames("newglibc") == ["newglibc-1.0.0-py3-none-manylinux_2_34_x86_64.whl"]
    assert wheelhouse.filenames("sdistonly") == ["sdistonly-1.0.0.tar.gz"]


def test_pure_wheels_and_sdist_install_from_local_index(
    wheelhouse: Wheelhouse, local_index: SimpleIndex, tmp_path: Path
) -> None:
    python = _venv(sys.executable, tmp_path / "venv")
    projects = ["beta", "zeta", "delta", "epsilon", "sdistonly"]
    run_uv(["pip", "install", "--python", python, "--index-url", local_index.url, *projects])
    versions = _python(
        python,
        "import alpha, beta, gamma, delta, epsilon, zeta, sdistonly\n"
        "print(alpha.__version__, sdistonly.BUILT_FROM_SDIST)",
    )
    # beta wants alpha>=1.0, zeta wants alpha<2: the newest that fits both
    assert versions == "1.1.0 True"


@pytest.mark.slow
def test_extuser_finds_libshared_only_through_ld_library_path(
    runtime_mirror: RuntimeMirror, local_index: SimpleIndex, tmp_path: Path
) -> None:
    runtime = _install_runtime(runtime_mirror, tmp_path)
    python = _venv(runtime / "bin" / "python3", tmp_path / "venv")
    run_uv(["pip", "install", "--python", python, "--index-url", local_index.url, "extuser"])
    lib_dir = tmp_path / "venv/lib/python3.12/site-packages/libshared/lib"
    assert (lib_dir / "libvlshared.so").is_file()

    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    code = "import extuser; print(extuser.answer())"
    failed = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env)
    assert failed.returncode != 0
    assert "libvlshared.so" in failed.stderr
    assert _python(python, code, env={**env, "LD_LIBRARY_PATH": str(lib_dir)}) == "42"
    assert _python(python, "import libshared; print(libshared.answer())", env=env) == "42"


# -- simple index -----------------------------------------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read(), response.geturl()
    except urllib.error.HTTPError as err:
        return err.code, err.read(), url


def test_simple_index_serves_pep503_pages(
    tmp_path: Path, simple_index_factory: Callable[..., SimpleIndex]
) -> None:
    folder = tmp_path / "dists"
    wheel = build_wheel(
        folder, "My_Pkg", "1.0", modules={"my_pkg/__init__.py": ""}, requires_python=">=3.8"
    )
    build_sdist(folder, "My_Pkg", "1.0")
    (folder / "notes.txt").write_text("not a distribution")
    index = simple_index_factory(folder)

    status, body, _ = _get(index.url + "/")
    assert status == 200 and b'href="my-pkg/"' in body
    status, body, final_url = _get(index.url + "/My_Pkg/")
    assert status == 200 and final_url.endswith("/simple/my-pkg/")
    page = body.decode()
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert f'href="../../files/{wheel.name}#sha256={digest}"' in page
    assert 'data-requires-python="&gt;=3.8"' in page
    assert "My_Pkg-1.0.tar.gz" in page and "notes.txt" not in page

    status, body, _ = _get(f"{index.base_url}/files/{wheel.name}")
    assert status == 200 and body == wheel.read_bytes()
    assert _get(index.url + "/nothing/")[0] == 404
    assert _get(f"{index.base_url}/files/notes.txt")[0] == 404
    assert index.requests[:2] == ["/simple/", "/simple/My_Pkg/"]


def test_simple_index_basic_auth(
    wheelhouse: Wheelhouse, tmp_path: Path, simple_index_factory: Callable[..., SimpleIndex]
) -> None:
    index = simple_index_factory(wheelhouse.path, username="builder", password="s3cr:et")
    assert _get(index.url + "/alpha/")[0] == 401
    token = base64.b64encode(b"builder:wrong").decode()
    assert _get(index.url + "/alpha/", {"Authorization": f"Basic {token}"})[0] == 401

    python = _venv(sys.executable, tmp_path / "venv")
    install = ["pip", "install", "--python", str(python)]
    refused = run_uv([*install, "--index-url", index.url, "alpha==1.0.0"], check=False)
    assert refused.returncode != 0 and "401" in refused.stderr

    run_uv([*install, "--index-url", index.url_with_credentials, "alpha==1.0.0"])
    assert _python(python, "import alpha; print(alpha.__version__)") == "1.0.0"

    index.clear_log()
    credentials = {"UV_INDEX_PRIVATE_USERNAME": "builder", "UV_INDEX_PRIVATE_PASSWORD": "s3cr:et"}
    run_uv([*install, "--default-index", f"private={index.url}", "alpha==2.0.0"], env=credentials)
    assert _python(python, "import alpha; print(alpha.__version__)") == "2.0.0"
    assert index.requests and not index.unauthorized


@pytest.mark.slow
def test_runtime_mirror_command_lists_pbs_archives_for_uv(
    tmp_path: Path, runtime_mirror_session: RuntimeMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`venvlayers runtime-mirror` turns downloaded PBS archives into an air-gapped mirror."""
    from venvlayers.cli.commands import main

    source = runtime_mirror_session.archives["3.12.1"]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    pbs_name = mirror / "cpython-3.12.1+20240107-x86_64-unknown-linux-gnu-install_only.tar.gz"
    shutil.copy(source, pbs_name)
    (mirror / "README").write_text("not an archive")
    assert main(["runtime-mirror", "--output", str(mirror / "downloads.json"), str(pbs_name)]) == 0
    assert main(["runtime-mirror", "--output", str(mirror / "x.json"), str(mirror / "README")]) == 2
    entries = json.loads((mirror / "downloads.json").read_text())
    assert list(entries) == ["cpython-3.12.1-linux-x86_64-gnu"]
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS_JSON_URL", (mirror / "downloads.json").as_uri())
    install_dir = tmp_path / "pythons"
    run_uv(["python", "install", "--install-dir", str(install_dir), "--no-bin", "cpython-3.12.1"])
    (python,) = install_dir.glob("cpython-3.12.1-*/bin/python3.12")
    assert (
        subprocess.run(
            [str(python), "-c", "print(1)"], capture_output=True, text=True, check=True
        ).stdout
        == "1\n"
    )
