"""The published metadata layout on a real built stack (issue 11 part B, no venvstacks run):
continued from by publish, a tagged archive name never gets other bytes, untagged
outputs merge, and every path argument (relative, '..', symlinked, with spaces) works or
is a one-line error (``deploy --target ../x`` was an internal error)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rig.cli import Run, index_table
from rig.index import SimpleIndex
from rig.runtime import RuntimeMirror

from venvlayers.cli.commands import main
from venvlayers.core.platforms import host_platform

pytestmark = pytest.mark.slow

PLATFORM = str(host_platform())

SPEC = """
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[frameworks]]
name = "base"
runtime = "cpython-3.12"
requirements = ["zeta"]

[[applications]]
name = "hello"
launch_module = "hello.py"
frameworks = ["base"]
requirements = []
versioned = true
"""

HELLO = "import zeta, alpha\nprint('hello', alpha.__version__)\n"
LAYERS = ["cpython-3.12", "framework-base", "app-hello"]


@dataclass
class Published:
    spec: Path
    tagged: Path
    plain: Path


def vl(*args: str | Path) -> int:
    return main(["-q", *(str(a) for a in args)])


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
    runtime_mirror_session: RuntimeMirror,
    local_index: SimpleIndex,
) -> Iterator[Published]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        root = tmp_path_factory.mktemp("layout") / "my stacks"  # a space in every path
        root.mkdir()
        (root / "hello.py").write_text(HELLO)
        spec = root / "venvstacks.toml"
        spec.write_text(SPEC + index_table(local_index.url))
        assert vl("build", "--lock-if-needed", spec) == 0
        found = Published(spec, root / "out tagged", root / "out plain")
        assert vl("publish", "--tag-outputs", "--output-dir", found.tagged, spec) == 0
        assert vl("publish", "--output-dir", found.plain, spec) == 0
        yield found


def metadata(out: Path, layer: str, tag: str = f"-{PLATFORM}") -> dict[str, object]:
    data = (out / "__venvstacks__" / "env_metadata" / f"{layer}{tag}.json").read_text()
    loaded: dict[str, object] = json.loads(data)
    return loaded


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_publish_writes_venvstacks_layout_and_values(published: Published) -> None:
    meta = published.tagged / "__venvstacks__"
    assert sorted(p.relative_to(meta).as_posix() for p in meta.rglob("*") if p.is_file()) == [
        *(f"env_metadata/{layer}-{PLATFORM}.json" for layer in sorted(LAYERS)),
        f"venvlayers-publish-{PLATFORM}.json",
        f"venvstacks-{PLATFORM}.json",
    ]
    plain = published.plain / "__venvstacks__"
    assert sorted(p.relative_to(plain).as_posix() for p in plain.rglob("*") if p.is_file()) == [
        *(f"env_metadata/{layer}.json" for layer in sorted(LAYERS)),
        "venvlayers-publish.json",
        "venvstacks.json",
    ]
    hello = metadata(published.tagged, "app-hello")
    assert hello["archive_name"] == f"app-hello@1-{PLATFORM}-1.tar.xz"
    # venvstacks' value formats: lock time in UTC with an offset, ASCII JSON, sorted, 2 spaces
    assert str(hello["locked_at"]).endswith("+00:00")
    framework = metadata(published.plain, "framework-base", "")
    assert framework["lock_version"] == 1 and framework["archive_name"] == "framework-base.tar.xz"
    text = (plain / "venvstacks.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_a_tagged_archive_name_never_gets_other_bytes(published: Published, tmp_path: Path) -> None:
    """Archives left without metadata (an interrupted run, another tool) keep their names."""
    out = Path(shutil.copytree(published.tagged, tmp_path / "out"))
    shutil.rmtree(out / "__venvstacks__")
    stranger = out / f"framework-base-{PLATFORM}-1.tar.xz"
    stranger.write_bytes(b"not ours")
    assert vl("publish", "--tag-outputs", "--output-dir", out, published.spec) == 0
    assert stranger.read_bytes() == b"not ours"
    base = metadata(out, "framework-base")
    assert base["archive_build"] == 2
    assert base["archive_name"] == f"framework-base-{PLATFORM}-2.tar.xz"
    # an archive with the very same bytes is simply taken up again
    assert metadata(out, "cpython-3.12")["archive_build"] == 1


def test_untagged_outputs_merge(published: Published, tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    assert vl("merge", published.plain, "--output-dir", merged) == 0
    for name in ("venvstacks.json", "venvlayers-publish.json"):
        source = published.plain / "__venvstacks__" / name
        assert (merged / "__venvstacks__" / name).read_bytes() == source.read_bytes()
    index = json.loads((merged / "venvstacks-index.json").read_text())
    assert index["layers"]["app-hello"]["platforms"][PLATFORM]["metadata"] == (
        "__venvstacks__/env_metadata/app-hello.json"
    )
    # a second platform's untagged output: same archive names, so merge says what to do
    other = Path(shutil.copytree(published.plain, tmp_path / "other"))
    for path in (other / "__venvstacks__").rglob("*.json"):
        path.write_text(path.read_text().replace(PLATFORM, "linux_aarch64"))
    assert vl("merge", published.plain, other, "--output-dir", tmp_path / "m2") == 2
    assert not (tmp_path / "m2").exists()


# --------------------------------------------------------------------- path arguments


def one_line_error(result: Run) -> str:
    assert result.code == 2, result.text
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.text
    return lines[0]


def test_every_path_argument_may_be_relative_dotted_symlinked_or_spaced(
    published: Published,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Run],
    runtime_mirror: RuntimeMirror,
) -> None:
    stacks = tmp_path / "my stacks"
    shutil.copytree(published.spec.parent, stacks / "stack", symlinks=True)
    (tmp_path / "link").symlink_to(stacks)
    work = tmp_path / "work dir"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = "../link/stack/venvstacks.toml"
    assert cli("lock", "--check", spec).code == 0
    # lock, build, publish and local-export read folders relative to the spec's folder (as
    # venvstacks does: ../link/stack here, the link kept); deploy and merge, to the working one
    assert cli("build", "--locked", "--build-dir", "../../build dir", spec).code == 0
    out = "../link/out dir"
    result = cli(
        "publish",
        "--tag-outputs",
        "--build-dir",
        "../../build dir",
        "--output-dir",
        "../out dir",
        spec,
    )
    assert result.code == 0, result.text
    # observation 12: a relative target with '..' was an internal error (exit 3)
    result = cli("deploy", "--from", out, "--target", "../x", "--run", "hello")
    assert result.code == 0, result.text
    assert (tmp_path / "x" / "app-hello@1").is_dir()
    result = cli("deploy", "--from", f"{out}/__venvstacks__", "--target", "../link/../x")
    assert result.code == 0, result.text
    assert cli("merge", out, "--output-dir", "../merged dir", "--report", "../m.md").code == 0
    assert (tmp_path / "merged dir" / "venvstacks-index.json").is_file()
    result = cli(
        "local-export", "--build-dir", "../../build dir", "--output-dir", "../../exp", spec
    )
    assert result.code == 0, result.text
    hello = subprocess.run(
        [tmp_path / "exp" / "app-hello@1/bin/python", "-m", "hello"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert hello.stdout.startswith("hello")

    # what does not exist (or is the wrong kind of thing) is one line, exit 2
    assert "../nowhere" in one_line_error(cli("deploy", "--from", "../nowhere", "--target", "../y"))
    (tmp_path / "a file").write_text("")
    one_line_error(cli("deploy", "--from", out, "--target", "../a file"))
    one_line_error(cli("merge", "../nowhere", "--output-dir", "../m3"))
    one_line_error(cli("publish", "--output-dir", out, "../nowhere/venvstacks.toml"))
    one_line_error(cli("publish", "--output-dir", "../../a file", spec))  # from the spec's folder
    one_line_error(cli("merge", out, "--output-dir", "../a file"))
