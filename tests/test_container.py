"""The builder image: built from the real Dockerfile with buildah, run without a daemon;
and the container job example (examples/workflows/container-job.yml) run in it by the
workflow runner, as GitHub runs a ``container:`` job (scenario g of issue 24).

No registry is reachable, so the base image is made here: a ``debootstrap --variant=minbase``
Debian bookworm rootfs with python3, from the Debian mirror this machine's apt uses. It is
kept (in buildah's vfs storage under ~/.cache/venvlayers-tests/container/) between runs;
the image under test is rebuilt every session. Durations go to timings.json next to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from rig import copy_source
from rig.caller_repo import add_greeting, lock_stack, write_stack
from rig.gha.container import ContainerEngine
from rig.gha.host import SYSTEM_PATH
from rig.gha_skips import runner_missing
from rig.runtime import RuntimeMirror
from rig.workflow_stage import Stage, describe

from venvlayers.cli.args import build_parser

pytestmark = [pytest.mark.container, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CACHE = (
    Path(os.environ.get("VENVLAYERS_TEST_CACHE", Path.home() / ".cache" / "venvlayers-tests"))
    / "container"
)
BASE_IMAGE = "localhost/venvlayers-test-base:bookworm-1"  # bump the suffix to rebuild the base
IMAGE = "localhost/venvlayers-test:session"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
ENTRYPOINT = ["/opt/venvlayers/bin/python", "/opt/venvlayers-src/entrypoint/main.py"]


def record_timing(name: str, seconds: float) -> None:
    timings = CACHE / "timings.json"
    data = json.loads(timings.read_text()) if timings.is_file() else {}
    data[name] = round(seconds, 1)
    timings.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"{name}: {seconds:.1f} s")


def ensure_tools() -> None:
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("building images with buildah --isolation chroot needs root on Linux")
    missing = [name for name in ("buildah", "debootstrap") if shutil.which(name) is None]
    if missing and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        if subprocess.run(install, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            subprocess.run(install, capture_output=True, check=False)
        missing = [name for name in missing if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} missing and `apt-get install` could not add them")


def debian_mirror() -> str:
    """The bookworm mirror apt uses here (deb822 .sources or one-line .list entries)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:(.*)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
        match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


class Buildah:
    """buildah with its own vfs storage (no daemon, no overlay mounts needed)."""

    def __init__(self, storage: Path) -> None:
        self.argv = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run")]
        self.argv += ["--storage-driver", "vfs"]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.argv, *args], capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def has_image(self, name: str) -> bool:
        return self("inspect", "--type", "image", name, check=False).returncode == 0

    @contextlib.contextmanager
    def container(self, image: str) -> Iterator[str]:
        name = self("from", "-q", image).stdout.strip()
        try:
            yield name
        finally:
            self("rm", name, check=False)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Parallel test sessions make the base image once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def make_base_image(buildah: Buildah) -> None:
    started = time.monotonic()
    rootfs = CACHE / "rootfs-building"
    shutil.rmtree(rootfs, ignore_errors=True)
    debootstrap = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}"]
    subprocess.run([*debootstrap, "bookworm", str(rootfs), debian_mirror()], check=True)
    try:
        with buildah.container("scratch") as ctr:
            mount = buildah("mount", ctr).stdout.strip()
            subprocess.run(["cp", "-a", f"{rootfs}/.", mount], check=True)
            buildah("umount", ctr)
            buildah(
                "config", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", "--cmd", "/bin/bash", ctr
            )
            buildah("commit", "-q", ctr, BASE_IMAGE)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    record_timing("base_image_seconds", time.monotonic() - started)


@pytest.fixture(scope="session")
def buildah() -> Buildah:
    ensure_tools()
    return Buildah(CACHE / "storage")


@pytest.fixture(scope="session")
def image(buildah: Buildah) -> Iterator[str]:
    with locked(CACHE / "base.lock"):
        if not buildah.has_image(BASE_IMAGE):
            make_base_image(buildah)
    started = time.monotonic()
    certs = ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"] if Path("/etc/ssl/certs").is_dir() else []
    buildah(
        "build", "--isolation", "chroot", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", *certs,
        "-t", IMAGE, "-f", str(ROOT / "Dockerfile"), str(ROOT),
    )  # fmt: skip
    record_timing("image_build_seconds", time.monotonic() - started)
    yield IMAGE
    buildah("rmi", "-f", IMAGE, check=False)


def run_image(
    buildah: Buildah,
    image: str,
    *,
    workdir: Path,
    env: Mapping[str, str] = {},
    mounts: Sequence[Path] = (),
    args: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the image's ENTRYPOINT like `docker run -v WORKDIR:/src -w /src IMAGE ARGS`.

    ``mounts`` appear at the same path inside (so file:// URLs keep working).
    """
    config = json.loads(buildah("inspect", "--type", "image", image).stdout)
    entrypoint = config["OCIv1"]["config"]["Entrypoint"]
    volumes = [f"{workdir}:/src", *(f"{m}:{m}:ro" for m in mounts)]
    if Path("/etc/ssl/certs").is_dir():
        volumes.append("/etc/ssl/certs:/etc/ssl/certs:ro")
    with buildah.container(image) as ctr:
        return buildah(
            "run", "--isolation", "chroot", "--workingdir", "/src",
            *(arg for volume in volumes for arg in ("-v", volume)),
            *(arg for key, value in env.items() for arg in ("-e", f"{key}={value}")),
            ctr, "--", *entrypoint, *args,
            check=False,
        )  # fmt: skip


def github_env(workspace: Path) -> dict[str, str]:
    """What the runner gives a Docker action: files under the (mounted) workspace here."""
    (workspace / ".runner").mkdir()
    for name in ("output", "summary"):
        (workspace / ".runner" / name).write_text("")
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": "/src",
        "GITHUB_OUTPUT": "/src/.runner/output",
        "GITHUB_STEP_SUMMARY": "/src/.runner/summary",
        "RUNNER_TEMP": "/src/.runner",
    }


def outputs_of(workspace: Path) -> dict[str, str]:
    lines = (workspace / ".runner" / "output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and "<<" not in line)


def test_image_config(buildah: Buildah, image: str) -> None:
    config = json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    assert config["Entrypoint"] == ENTRYPOINT
    labels = config["Labels"]
    for key in ("source", "licenses", "revision", "version", "title", "description"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert "UV_SYSTEM_CERTS=1" in config["Env"]


def test_builder_code_is_precompiled(buildah: Buildah, image: str) -> None:
    """The image sets PYTHONDONTWRITEBYTECODE, so bytecode missing at build time would be
    compiled again on every run (0.2-0.4 s of pydantic and venvlayers per command)."""
    probe = (
        "import importlib.util, os, pydantic.main, venvlayers.cli.commands\n"
        "for m in (pydantic.main, venvlayers.cli.commands):\n"
        "    print(os.path.isfile(importlib.util.cache_from_source(m.__file__)))"
    )
    with buildah.container(image) as ctr:
        done = buildah(
            "run", "--isolation", "chroot", ctr, "--", "/opt/venvlayers/bin/python", "-c", probe,
            check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_arguments_are_the_command_line(buildah: Buildah, image: str, tmp_path: Path) -> None:
    done = run_image(buildah, image, workdir=tmp_path, args=["platform"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "linux_x86_64"


def test_docker_action_inputs(buildah: Buildah, image: str, tmp_path: Path) -> None:
    copy_source(ROOT / "examples" / "basic", tmp_path, dirs_exist_ok=True)
    (tmp_path / "venvstacks.toml").rename(tmp_path / "stack.toml")
    env = {**github_env(tmp_path), "INPUT_COMMAND": "show", "INPUT_SPEC": "stack.toml"}
    env["INPUT_GITHUB-TOKEN"] = "ghs_containerTokenNeverPrinted"
    done = run_image(buildah, image, workdir=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::add-mask::ghs_containerTokenNeverPrinted" in done.stdout
    assert done.stdout.count("ghs_containerTokenNeverPrinted") == 1
    outputs = outputs_of(tmp_path)
    assert outputs["platform"] == "linux_x86_64"
    assert outputs["report"] == "/src/.runner/venvlayers-show-report.md"
    assert "app-hello" in (tmp_path / ".runner" / "summary").read_text()


@pytest.mark.network
def test_publish_the_example(
    buildah: Buildah, image: str, tmp_path: Path, runtime_mirror_session: RuntimeMirror
) -> None:
    if "publish" not in build_parser()._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        pytest.skip("`venvlayers publish` is not implemented on this branch yet")
    copy_source(ROOT / "examples" / "basic", tmp_path, dirs_exist_ok=True)
    mirror = runtime_mirror_session
    mounts = [mirror.downloads_json.parent, *(a.parent for a in mirror.archives.values())]
    env = {**github_env(tmp_path), **mirror.env, "INPUT_COMMAND": "publish"}
    # the Docker-action spelling: dashes kept
    env.update({"INPUT_OUTPUT-DIR": "_publish", "INPUT_UPLOAD-ARTIFACT": "true"})
    started = time.monotonic()
    done = run_image(buildah, image, workdir=tmp_path, env=env, mounts=mounts)
    record_timing("container_publish_seconds", time.monotonic() - started)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = outputs_of(tmp_path)
    archives = json.loads(outputs["archives"])
    assert len(archives) == 3
    for archive in archives:  # paths as the container saw them
        inside = Path(archive)
        assert (
            tmp_path / (inside.relative_to("/src") if inside.is_absolute() else inside)
        ).is_file()
    assert outputs["metadata-dir"].endswith("/__venvstacks__")
    metadata = tmp_path / "_publish" / "__venvstacks__" / "venvstacks-linux_x86_64.json"
    assert metadata.is_file()


def test_the_container_job_example_builds_and_publishes_in_the_image(
    buildah: Buildah, image: str, tmp_path: Path, runtime_mirror: RuntimeMirror
) -> None:
    """Every step of the example's job (checkout, lock check, build, publish, upload) runs
    inside the image: the runner's PATH has no venvlayers, the image's has."""
    if reason := runner_missing():
        pytest.skip(reason)
    example = ROOT / "examples" / "workflows" / "container-job.yml"
    with Stage(tmp_path / "stage", runtime_mirror.archives[runtime_mirror.version]) as stage:
        named = "ghcr.io/venvlayers/venvlayers:1"
        assert f"image: {named} " in example.read_text(encoding="utf-8")
        stage.services.containers = ContainerEngine(buildah.argv, {named: image})
        repo = tmp_path / "repo"
        add_greeting(stage.packages)
        lock_stack(write_stack(repo, stage.index.url))
        workflow = repo / ".github" / "workflows" / "container-job.yml"
        workflow.parent.mkdir(parents=True)
        shutil.copy2(example, workflow)
        sha = stage.publish_caller(repo, ["refs/heads/main"])
        run = stage.run(workflow, stage.event(sha))
        print(describe(run, stage))
        job = run.job("publish")
        assert job.result == "success", job.log
        assert [s.outcome for s in job.steps] == ["success"] * len(job.steps), job.log
        assert shutil.which("venvlayers", path=SYSTEM_PATH) is None  # so the steps ran inside
        assert stage.results.artifact_names() == ["venvlayers-linux_x86_64"]
        with zipfile.ZipFile(stage.results.artifact_zip("venvlayers-linux_x86_64")) as zipped:
            names = zipped.namelist()
        assert "__venvstacks__/venvstacks-linux_x86_64.json" in names
        assert sorted(n for n in names if n.endswith(".tar.xz")) == [
            "app-hello-linux_x86_64-1.tar.xz",
            "cpython-3.12-linux_x86_64-1.tar.xz",
        ], names
