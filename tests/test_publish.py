"""Publish, local-export and deploy on a real (offline) built stack."""

from __future__ import annotations

import json
import lzma
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror

from venvlayers.cli.commands import main

pytestmark = pytest.mark.slow

SPEC = """
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []
platforms = ["linux_x86_64", "win_amd64"]

[[frameworks]]
name = "base"
runtime = "cpython-3.12"
requirements = ["beta"]

[[applications]]
name = "tool"
launch_module = "launch/tool.py"
frameworks = ["base"]
requirements = ["epsilon"]

[[applications]]
name = "other"
launch_module = "launch/other"
frameworks = ["base"]
requirements = []
versioned = true

[[tool.uv.index]]
name = "local"
url = "{index}"
default = true
"""

TOOL = """\
import sys
import alpha, beta, epsilon
print("tool", alpha.__file__, beta.__file__, epsilon.__file__, *sys.argv[1:])
"""


@dataclass
class Stack:
    folder: Path
    spec: Path
    out: Path


def make_stack(folder: Path, index: SimpleIndex) -> Stack:
    (folder / "launch" / "other").mkdir(parents=True)
    (folder / "launch" / "tool.py").write_text(TOOL)
    (folder / "launch" / "other" / "__init__.py").write_text("")
    (folder / "launch" / "other" / "__main__.py").write_text(
        "import alpha\nprint('other', alpha.__version__)\n"
    )
    spec = folder / "venvstacks.toml"
    spec.write_text(SPEC.format(index=index.url))
    return Stack(folder, spec, folder / "out")


def run(*args: str) -> None:
    assert main(["-q", *args]) == 0


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_mirror_session: RuntimeMirror,
    local_index: SimpleIndex,
) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        stack = make_stack(tmp_path_factory.mktemp("stack"), local_index)
        run("build", "--lock-if-needed", str(stack.spec))
        run("publish", "--tag-outputs", "--output-dir", str(stack.out), str(stack.spec))
        yield stack


def archives(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar.xz"))}


def test_publish_writes_venvstacks_metadata(published: Stack) -> None:
    names = sorted(archives(published.out))
    assert names == [
        "app-other@1-linux_x86_64-1.tar.xz",
        "app-tool-linux_x86_64-1.tar.xz",
        "cpython-3.12-linux_x86_64-1.tar.xz",
        "framework-base-linux_x86_64-1.tar.xz",
    ]
    meta_dir = published.out / "__venvstacks__"
    manifest = json.loads((meta_dir / "venvstacks-linux_x86_64.json").read_text())
    assert [m["layer_name"] for m in manifest["layers"]["applications"]] == [
        "app-tool",
        "app-other",
    ]
    tool = json.loads((meta_dir / "env_metadata" / "app-tool-linux_x86_64.json").read_text())
    assert tool["install_target"] == "app-tool"
    assert tool["runtime_layer"] == "cpython-3.12"
    assert tool["required_layers"] == ["framework-base"]
    assert tool["python_implementation"] == "cpython@3.12.1"
    assert tool["bound_to_implementation"] is False
    assert tool["app_launch_module"] == "tool"
    assert tool["archive_build"] == 1
    assert tool["target_platform"] == "linux_x86_64"
    archive = published.out / tool["archive_name"]
    assert tool["archive_size"] == archive.stat().st_size
    assert set(tool) >= {
        "requirements_hash",
        "lock_version",
        "locked_at",
        "archive_hashes",
        "app_launch_module_hash",
    }
    other = json.loads((meta_dir / "env_metadata" / "app-other-linux_x86_64.json").read_text())
    assert other["install_target"] == "app-other@1"


def test_archives_are_standard_and_leak_no_build_path(published: Stack) -> None:
    build = str(published.folder / "_build")
    for name, data in archives(published.out).items():
        listing = subprocess.run(
            ["tar", "-tJf", str(published.out / name)], capture_output=True, text=True, check=True
        )
        root = name.split("-linux_x86_64")[0]
        assert all(
            line.startswith(root + "/") or line == root + "/"
            for line in listing.stdout.splitlines()
        )
        assert "__pycache__" not in listing.stdout
        content = lzma.decompress(data)
        assert build.encode() not in content, f"{name} mentions the build folder"
        with tarfile.open(published.out / name) as tar:
            members = tar.getmembers()
        assert {m.uid for m in members} == {0}
        assert len({m.mtime for m in members}) == 1
        if name.startswith("app-"):
            assert f"{root}/pyvenv.cfg" not in listing.stdout


def test_publish_again_gives_identical_bytes(
    published: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = archives(published.out)
    # into a fresh folder: every archive is written again, byte for byte the same
    fresh = tmp_path / "again"
    run("publish", "--tag-outputs", "--output-dir", str(fresh), str(published.spec))
    assert archives(fresh) == before
    # into the same folder with nothing changed: the archives are reused, not rewritten
    mtimes = {p.name: p.stat().st_mtime_ns for p in published.out.glob("*.tar.xz")}
    assert (
        main(["publish", "--tag-outputs", "--output-dir", str(published.out), str(published.spec)])
        == 0
    )
    assert "app-tool-linux_x86_64-1.tar.xz unchanged" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in published.out.glob("*.tar.xz")} == mtimes
    assert archives(published.out) == before
    meta = json.loads(
        (published.out / "__venvstacks__/env_metadata/app-tool-linux_x86_64.json").read_text()
    )
    assert meta["archive_build"] == 1  # same content: same build number


def test_rebuild_elsewhere_gives_identical_archives(
    published: Stack, tmp_path: Path, runtime_mirror: RuntimeMirror, local_index: SimpleIndex
) -> None:
    moved = tmp_path / "elsewhere" / "stack"
    shutil.copytree(published.folder, moved, ignore=shutil.ignore_patterns("_build", "out"))
    run("build", "--lock-if-needed", str(moved / "venvstacks.toml"))
    run(
        "publish",
        "--tag-outputs",
        "--output-dir",
        str(moved / "out"),
        str(moved / "venvstacks.toml"),
    )
    assert archives(moved / "out") == archives(published.out)


def test_deploy_runs_every_app(published: Stack, tmp_path: Path) -> None:
    target = tmp_path / "deployed"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "venvlayers",
            "deploy",
            "--from",
            str(published.out),
            "--target",
            str(target),
            "--run",
            "tool",
            "--",
            "extra-arg",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{target}/framework-base/lib/python3.12/site-packages/alpha" in result.stdout
    assert f"{target}/app-tool/lib/python3.12/site-packages/epsilon" in result.stdout
    assert "extra-arg" in result.stdout
    other = subprocess.run(
        [str(target / "app-other@1/bin/python"), "-m", "other"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == "other 2.0.0"  # beta pulls the newest alpha
    # the build folder can go away: the deployed stack stands alone
    assert (
        "_build"
        not in (target / "app-tool/lib/python3.12/site-packages/sitecustomize.py").read_text()
    )
    # a second deploy changes nothing
    assert main(["-q", *deploy_args(published, target)]) == 0


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_deploy_refuses_damaged_archive_and_leaves_target(
    published: Stack, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(published.out, copy)
    victim = next(copy.glob("app-tool-*.tar.xz"))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-10] + bytes(10))
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    before = snapshot(target)
    code = main(
        [
            "deploy",
            "--from",
            str(copy),
            "--target",
            str(target),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert ("size" in err) if damage == "truncate" else ("sha256" in err)
    assert snapshot(target) == before
    # a target that does not exist yet is not created either
    fresh = tmp_path / "fresh"
    code = main(["deploy", "--from", str(copy), "--target", str(fresh)])
    assert code == 2
    assert not fresh.exists()


def deploy_args(published: Stack, target: Path) -> list[str]:
    return ["deploy", "--from", str(published.out), "--target", str(target)]


def test_deploy_with_an_unreadable_record_unpacks_again(
    published: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target"
    assert main(deploy_args(published, target)) == 0
    (target / ".venvlayers/current/deployment.json").write_text('{"framework-base": ')  # cut short
    capsys.readouterr()
    assert main(deploy_args(published, target)) == 0
    captured = capsys.readouterr()
    assert "unreadable deploy record" in captured.err
    # made again: the deployed files are checked against the layer index, none trusted
    assert "app-tool: updating from" in captured.out + captured.err
    assert "Traceback" not in captured.err
    run_tool = [str(target / "app-tool/bin/python"), "-m", "tool"]
    assert subprocess.run(run_tool, capture_output=True, check=False).returncode == 0


def test_deploy_of_metadata_without_layers_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = tmp_path / "out" / "__venvstacks__"
    meta.mkdir(parents=True)
    (meta / "venvstacks.json").write_text('{"layers": {}}')
    target = tmp_path / "target"
    code = main(
        [
            "deploy",
            "--from",
            str(tmp_path / "out"),
            "--target",
            str(target),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "lists no layers" in err and "nothing to deploy" in err
    assert not target.exists()


def test_local_export_runs_apps(published: Stack, tmp_path: Path) -> None:
    out = tmp_path / "export"
    run("local-export", "--output-dir", str(out), str(published.spec))
    result = subprocess.run(
        [str(out / "app-tool/bin/python"), "-m", "tool"], capture_output=True, text=True, check=True
    )
    assert f"{out}/framework-base/" in result.stdout
    meta = json.loads((out / "__venvstacks__/env_metadata/app-tool.json").read_text())
    assert "archive_name" not in meta and meta["install_target"] == "app-tool"


def relabel(source: Path, target: Path, old: str, new: str) -> Path:
    """A second platform's publish output made from a real one (names and metadata)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("deployed"))
    for path in sorted(target.rglob("*")):
        if path.is_file() and old in path.name:
            path = path.rename(path.with_name(path.name.replace(old, new)))
        if path.suffix == ".json":
            path.write_text(path.read_text().replace(old, new))
    return target


def test_merge_and_release_real_publish_outputs(
    published: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rig.github_double import GitHubDouble

    from venvlayers.formats.assets import github_asset_name

    linux = tmp_path / "artifacts" / "linux"
    shutil.copytree(published.out, linux, ignore=shutil.ignore_patterns("deployed"))
    relabel(linux, tmp_path / "artifacts" / "win", "linux_x86_64", "win_amd64")
    merged = tmp_path / "merged"
    report = tmp_path / "merge.md"
    code = main(
        [
            "merge",
            str(tmp_path / "artifacts"),
            "--output-dir",
            str(merged),
            "--report",
            str(report),
            "--expect-platform",
            "linux_x86_64,win_amd64",
        ]
    )
    assert code == 0, capsys.readouterr().err
    index = json.loads((merged / "venvstacks-index.json").read_text())
    assert set(index["layers"]["app-tool"]["platforms"]) == {"linux_x86_64", "win_amd64"}
    assert "app-tool" in report.read_text()

    token = "ghs_PipelineSecret0000000000000000"
    with GitHubDouble(token=token, repo="octo/stacks") as github:
        monkeypatch.setenv("GITHUB_TOKEN", token)
        monkeypatch.setenv("GITHUB_REPOSITORY", "octo/stacks")
        monkeypatch.setenv("GITHUB_API_URL", github.api_url)
        assert main(["release", "--tag", "v1.0.0", str(merged)]) == 0
        assert main(["release", "--tag", "v1.0.0", str(merged)]) == 0  # idempotent
        names = sorted(asset.name for asset in github.assets_of("v1.0.0"))
    out = capsys.readouterr()
    assert token not in out.out + out.err
    # GitHub turns the '@' of versioned layers into '.'; we upload under that name ourselves
    expected = [
        github_asset_name(p.name)
        for p in merged.iterdir()
        if p.is_file() and p.name != "SHA256SUMS"
    ] + ["SHA256SUMS", "venvstacks-linux_x86_64.json", "venvstacks-win_amd64.json"]
    assert names == sorted(expected)
    assert "app-other.1-linux_x86_64-1.tar.xz" in names
    assert "uploaded 0, already present" in out.err


def pyc_files(target: Path) -> dict[str, int]:
    """``<layer>/<path>`` -> mtime of every .pyc of the layers deployed in ``target`` (each
    ``TARGET/<install_target>`` is a link into the current deployment)."""
    found: dict[str, int] = {}
    for layer in sorted(p for p in target.iterdir() if not p.name.startswith(".")):
        real = layer.resolve()
        for pyc in sorted(real.rglob("*.pyc")):
            found[f"{layer.name}/{pyc.relative_to(real)}"] = pyc.stat().st_mtime_ns
    return found


def test_deploy_compiles_what_each_layers_postinstall_would(
    published: Stack, tmp_path: Path
) -> None:
    """Deploy compiles every layer at once (bytecode.compile_layers); each layer's own
    postinstall.py, run afterwards, finds nothing left to compile or link."""
    target = tmp_path / "target"
    assert main(deploy_args(published, target)) == 0
    compiled = pyc_files(target)
    layers = sorted(p for p in target.iterdir() if (p / "postinstall.py").is_file())
    assert {name.split("/")[0] for name in compiled} == {p.name for p in layers}
    # both runtimes' versions of bytecode where layers use them, e.g. cpython-312 here
    assert all(".cpython-312." in name for name in compiled)
    before = {p: (p / "pyvenv.cfg").read_text() for p in layers if (p / "pyvenv.cfg").exists()}
    runtime_python = target / "cpython-3.12" / "bin" / "python3.12"
    for layer in layers:
        subprocess.run([str(runtime_python), str(layer / "postinstall.py")], check=True)
    again = pyc_files(target)
    assert again.keys() == compiled.keys()
    # postinstall.py rewrites sitecustomize.py (so compiles it again); nothing else changed
    changed = {name for name in compiled if again[name] != compiled[name]}
    assert all("/sitecustomize." in name for name in changed)
    assert {p: (p / "pyvenv.cfg").read_text() for p in before} == before


def test_compile_layers_uses_each_layers_runtime(published: Stack, tmp_path: Path) -> None:
    from venvlayers.deploy.bytecode import compile_layers

    target = tmp_path / "target"
    assert main(deploy_args(published, target)) == 0
    for pyc in target.rglob("__pycache__"):
        shutil.rmtree(pyc)
    compile_layers([target / "app-tool", target / "framework-base"])
    compiled = pyc_files(target)
    assert any(name.startswith("app-tool/lib/") for name in compiled)
    assert any(name.startswith("framework-base/lib/") for name in compiled)
    assert not any(name.startswith("cpython-3.12/") for name in compiled)
