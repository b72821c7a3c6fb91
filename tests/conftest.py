"""Session-wide isolation of uv plus the offline rig fixtures (see tests/rig/).

Fixtures (all lazy: nothing is built unless a test asks for it):

- ``runtime_mirror`` / ``runtime_mirror_311``: a ``RuntimeMirror`` for CPython 3.12.1
  (the 3.11 one lists 3.11.7 *and* 3.12.1). Function-scoped: while the test runs,
  ``UV_PYTHON_DOWNLOADS_JSON_URL`` points at the mirror. The ``*_session`` variants give
  the same object without touching the environment (for session-scoped fixtures).
- ``wheelhouse``: the standard generated ``Wheelhouse`` (cp312 extension wheels).
- ``local_index``: a ``SimpleIndex`` serving the wheelhouse for the whole session
  (call ``clear_log()`` before asserting on ``requests``).
- ``simple_index_factory``: start extra indexes (other folders, basic auth) for one test.
- ``peer``: venvstacks 0.8.0, the reference tool, runnable offline (``rig.peer``).
- ``deploy_versions``: a small stack published twice, v2 changing one app (``rig.deploy_stack``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rig import LEAKY_ENV
from rig.cli import Run
from rig.deploy_stack import Versions as DeployVersions
from rig.deploy_stack import published_versions
from rig.index import SimpleIndex
from rig.peer import PEER_WHEEL, Peer, install_peer, peer_available
from rig.runtime import (
    RuntimeMirror,
    host_x86_64_linux,
    local_cpython_prefix,
    make_runtime_mirror,
)
from rig.wheels import Wheelhouse, make_wheelhouse


@pytest.fixture(scope="session", autouse=True)
def _isolate_uv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep uv away from user config, the user's cache, ~/.local and GitHub."""
    root = tmp_path_factory.mktemp("uv-isolation")
    no_downloads = root / "no-python-downloads.json"
    # An empty downloads list: a test that forgets the runtime mirror fails fast with
    # "no download found" instead of waiting on unreachable GitHub.
    no_downloads.write_text(json.dumps({}))
    with pytest.MonkeyPatch.context() as mp:
        for name in LEAKY_ENV:
            mp.delenv(name, raising=False)
        for sub in ("config", "uv-cache", "python", "python-bin"):
            (root / sub).mkdir()
        mp.setenv("XDG_CONFIG_HOME", str(root / "config"))
        mp.setenv("UV_CACHE_DIR", str(root / "uv-cache"))
        mp.setenv("UV_PYTHON_INSTALL_DIR", str(root / "python"))
        mp.setenv("UV_PYTHON_BIN_DIR", str(root / "python-bin"))
        mp.setenv("UV_NO_PROGRESS", "1")
        mp.setenv("UV_PYTHON_DOWNLOADS_JSON_URL", no_downloads.as_uri())
        yield


def _mirror(
    tmp_path_factory: pytest.TempPathFactory, versions: list[str], name: str
) -> RuntimeMirror:
    if not host_x86_64_linux():
        pytest.skip("the runtime rig repackages a local x86_64 Linux CPython")
    runtimes = []
    for version in versions:
        prefix = local_cpython_prefix(version)
        if prefix is None:
            pytest.skip(f"no local CPython {version} (set VENVLAYERS_TEST_CPYTHON_*)")
        runtimes.append((prefix, version))
    return make_runtime_mirror(runtimes, tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def runtime_mirror_session(tmp_path_factory: pytest.TempPathFactory) -> RuntimeMirror:
    return _mirror(tmp_path_factory, ["3.12.1"], "runtime-mirror")


@pytest.fixture(scope="session")
def runtime_mirror_311_session(tmp_path_factory: pytest.TempPathFactory) -> RuntimeMirror:
    return _mirror(tmp_path_factory, ["3.11.7", "3.12.1"], "runtime-mirror-311")


@pytest.fixture
def runtime_mirror(
    runtime_mirror_session: RuntimeMirror, monkeypatch: pytest.MonkeyPatch
) -> RuntimeMirror:
    for key, value in runtime_mirror_session.env.items():
        monkeypatch.setenv(key, value)
    return runtime_mirror_session


@pytest.fixture
def runtime_mirror_311(
    runtime_mirror_311_session: RuntimeMirror, monkeypatch: pytest.MonkeyPatch
) -> RuntimeMirror:
    for key, value in runtime_mirror_311_session.env.items():
        monkeypatch.setenv(key, value)
    return runtime_mirror_311_session


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    if not host_x86_64_linux():
        pytest.skip("the wheelhouse compiles x86_64 Linux shared libraries")
    return make_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


@pytest.fixture(scope="session")
def local_index(wheelhouse: Wheelhouse) -> Iterator[SimpleIndex]:
    with SimpleIndex(wheelhouse.path) as index:
        yield index


@pytest.fixture
def simple_index_factory() -> Iterator[Callable[..., SimpleIndex]]:
    """``factory(folder, username=None, password=None)`` -> a running ``SimpleIndex``."""
    started: list[SimpleIndex] = []

    def factory(
        folder: Path, *, username: str | None = None, password: str | None = None
    ) -> SimpleIndex:
        index = SimpleIndex(folder, username=username, password=password).start()
        started.append(index)
        return index

    yield factory
    for index in started:
        index.stop()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``cli(*args)`` runs ``venvlayers`` in-process and returns its code and output."""
    from venvlayers.cli.commands import main

    def run(*args: str | Path) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def peer() -> Peer:
    """venvstacks 0.8.0 (the reference tool) in a cached venv; needs PyPI (``network`` tests)."""
    if not peer_available():
        pytest.skip(f"the reference tool's wheel is not at {PEER_WHEEL}")
    return install_peer()


@pytest.fixture(scope="session")
def deploy_versions(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_mirror_session: RuntimeMirror,
    local_index: SimpleIndex,
) -> DeployVersions:
    """A small stack published twice, v2 changing one app only (``rig.deploy_stack``)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        return published_versions(tmp_path_factory.mktemp("deploy-stack"), local_index.url)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Which commit of each GitHub action the workflow runner ran (issue 24: say so)."""
    from rig.workflow_stage import actions_summary

    lines = actions_summary()
    if lines:
        terminalreporter.section("GitHub actions run by the workflow runner")
        for line in lines:
            terminalreporter.write_line(line)
