"""SBOMs: one CycloneDX document per published layer (beside the archive and inside it).

The example stack (examples/basic) is built from PyPI and published twice; each layer's
SBOM must list exactly the distributions its archive ships, with the purls and SHA-256
hashes of the lock, be byte-identical across publishes and validate against the CycloneDX
JSON schema (cyclonedx-python-lib's validator, a test dependency, offline).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name
from rig import copy_source
from rig.runtime import RuntimeMirror
from test_merge import LINUX, make_publish_output

from venvlayers.cli.commands import main
from venvlayers.core.errors import PublishError
from venvlayers.core.report import Reporter
from venvlayers.formats.assets import sbom_name
from venvlayers.publish.sbom import (
    IN_LAYER,
    InstalledDist,
    LockedEntry,
    installed_wheel,
    read_lock_entries,
)
from venvlayers.release.merge import MergeConsistencyError, ProblemKind, merge_publish_outputs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "basic"


def run(*args: str | Path) -> None:
    assert main(["-q", *map(str, args)]) == 0


@dataclass
class Published:
    folder: Path
    first: Path
    second: Path


@pytest.fixture(scope="module")
def example(
    tmp_path_factory: pytest.TempPathFactory, runtime_mirror_session: RuntimeMirror
) -> Iterator[Published]:
    folder = tmp_path_factory.mktemp("example") / "basic"
    copy_source(EXAMPLE, folder)
    spec = folder / "venvstacks.toml"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in runtime_mirror_session.env.items():
            mp.setenv(key, value)
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        run("build", "--locked", spec)
        first, second = folder / "out-1", folder / "out-2"
        run("publish", "--tag-outputs", "--output-dir", first, spec)
        run("publish", "--tag-outputs", "--output-dir", second, spec)
        yield Published(folder, first, second)


def sboms(out: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(out.glob("*.cdx.json"))}


def archive_of(sbom: Path) -> Path:
    (archive,) = [p for p in sbom.parent.glob("*.tar.xz") if sbom_name(p.name) == sbom.name]
    return archive


def shipped_dists(archive: Path) -> set[tuple[str, str]]:
    """(name, version) of every *.dist-info the archive holds, from its METADATA."""
    found = set()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if len(parts) > 2 and parts[-2].endswith(".dist-info") and parts[-1] == "METADATA":
                handle = tar.extractfile(member)
                assert handle is not None
                headers = HeaderParser().parsestr(handle.read().decode("utf-8"))
                found.add((canonicalize_name(headers["Name"]), headers["Version"]))
    return found


def lock_hashes(folder: Path, layer: str) -> dict[tuple[str, str], set[str]]:
    # venvstacks' lock file names: dots in the layer name become underscores
    name = layer.replace(".", "_")
    lock = tomllib.loads((folder / "requirements" / layer / f"pylock.{name}.toml").read_text())
    return {
        (canonicalize_name(p["name"]), p["version"]): {w["hashes"]["sha256"] for w in p["wheels"]}
        for p in lock.get("packages", [])
    }


def prop(component: dict[str, object], name: str) -> str | None:
    properties = component.get("properties") or []
    assert isinstance(properties, list)
    return next((p["value"] for p in properties if p["name"] == f"venvlayers:{name}"), None)


# --- the example stack ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.network
def test_each_layer_sbom_lists_exactly_what_it_ships(example: Published) -> None:
    found = sboms(example.first)
    assert len(found) == 3  # runtime, framework and app: one SBOM beside each archive
    packages_seen = 0
    for name, path in found.items():
        bom = json.loads(path.read_text(encoding="utf-8"))
        assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
        layer = bom["metadata"]["component"]
        assert name == sbom_name(archive_of(path).name)
        assert name.startswith(f"{layer['name']}-{LINUX}-")
        layer_name = prop(layer, "layer-name")
        assert layer_name is not None
        libraries = [c for c in bom["components"] if c["type"] == "library"]
        listed = {(c["name"], c["version"]) for c in libraries}
        assert listed == shipped_dists(archive_of(path))
        hashes = lock_hashes(example.folder, layer_name)
        assert listed == set(hashes)  # the example's locks hold no platform-only packages
        for component in libraries:
            key = (component["name"], component["version"])
            assert component["purl"] == f"pkg:pypi/{key[0]}@{key[1]}"
            assert component["bom-ref"] == component["purl"]
            (digest,) = component["hashes"]
            assert digest["alg"] == "SHA-256" and digest["content"] in hashes[key]
        packages_seen += len(libraries)
        own = [d for d in bom["dependencies"] if d["ref"] == layer["bom-ref"]]
        assert own and sorted(own[0]["dependsOn"]) == own[0]["dependsOn"]
        refs = {c["bom-ref"] for c in bom["components"]}
        assert set(own[0]["dependsOn"]) == refs
        if layer_name == "cpython-3.12":
            assert layer["type"] == "platform"
            (cpython,) = [c for c in bom["components"] if c["name"] == "CPython"]
            assert cpython["version"] == "3.12.1"
            assert cpython["purl"] == "pkg:generic/python@3.12.1"
            assert [c["name"] for c in bom["components"]] == ["CPython"]  # nothing below it
        if layer_name == "app-hello":
            assert layer["type"] == "application"
            lower = {c["name"] for c in bom["components"] if prop(c, "layer") == "lower"}
            assert lower == {"framework-common", "cpython-3.12"}
    assert packages_seen == 2  # attrs in the framework, idna in the app


@pytest.mark.slow
@pytest.mark.network
def test_sboms_are_byte_identical_across_publishes(example: Published) -> None:
    first, second = sboms(example.first), sboms(example.second)
    assert first.keys() == second.keys()
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes(), name
        bom = json.loads(path.read_text(encoding="utf-8"))
        assert bom["serialNumber"].startswith("urn:uuid:")
        assert bom["metadata"]["timestamp"] == prop(bom["metadata"]["component"], "locked-at")
        # sorted keys, indented, trailing newline: the house JSON style
        assert path.read_text(encoding="utf-8").endswith("}\n")


@pytest.mark.slow
@pytest.mark.network
def test_sboms_validate_against_the_cyclonedx_schema(
    example: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object) -> None:
        raise AssertionError("the CycloneDX schema validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)  # the schemas ship with the library
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    for name, path in sboms(example.first).items():
        error = validator.validate_str(path.read_text(encoding="utf-8"))
        assert error is None, f"{name}: {error}"


@pytest.mark.slow
@pytest.mark.network
def test_the_layer_carries_its_sbom_and_deploy_keeps_it(example: Published, tmp_path: Path) -> None:
    target = tmp_path / "deployed"
    out = example.first
    run("deploy", "--from", out, "--target", target)
    for path in sboms(out).values():
        install_target = json.loads(path.read_text())["metadata"]["component"]["name"]
        with tarfile.open(archive_of(path)) as tar:
            inside = tar.extractfile(f"{install_target}/{IN_LAYER}")
            assert inside is not None and inside.read() == path.read_bytes()
        assert (target / install_target / IN_LAYER).read_bytes() == path.read_bytes()


@pytest.mark.slow
@pytest.mark.network
def test_merge_carries_the_sboms_and_release_uploads_them(
    example: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rig.github_double import GitHubDouble

    merged = tmp_path / "merged"
    run("merge", example.first, "--output-dir", merged)
    assert sboms(merged).keys() == sboms(example.first).keys()
    token = "ghs_SbomReleaseSecret00000000000000"
    with GitHubDouble(token=token, repo="octo/stacks") as github:
        monkeypatch.setenv("GITHUB_TOKEN", token)
        monkeypatch.setenv("GITHUB_REPOSITORY", "octo/stacks")
        monkeypatch.setenv("GITHUB_API_URL", github.api_url)
        run("release", "--tag", "v1.0.0", merged)
        names = {asset.name for asset in github.assets_of("v1.0.0")}
    assert set(sboms(merged)) <= names
    sums = (merged / "SHA256SUMS").read_text(encoding="utf-8")
    assert all(f"  {name}\n" in sums for name in sboms(merged))
    # the build-stacks release job lists what its attest-sboms jobs attest from this folder
    output = tmp_path / "github-output"
    output.write_text("")
    done = subprocess.run(
        [sys.executable, str(ROOT / "entrypoint" / "release_subjects.py"), str(merged)],
        env={**os.environ, "GITHUB_OUTPUT": str(output)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    subjects = json.loads(output.read_text().strip().removeprefix("sboms="))
    archives = sorted(p for p in merged.glob("*.tar.xz"))
    assert [s["sbom"] for s in subjects] == [sbom_name(a.name) for a in archives]
    assert [s["digest"] for s in subjects] == [
        "sha256:" + hashlib.sha256(a.read_bytes()).hexdigest() for a in archives
    ]


# --- merge checks them -------------------------------------------------------------------------


def merge_problems(artifacts: Path, tmp_path: Path) -> list[tuple[ProblemKind, str]]:
    with pytest.raises(MergeConsistencyError) as caught:
        merge_publish_outputs([artifacts], tmp_path / "merged", reporter=Reporter(io.StringIO()))
    return [(p.kind, p.message) for p in caught.value.report.problems]


def test_merge_refuses_a_missing_sbom(tmp_path: Path) -> None:
    artifacts = make_publish_output(tmp_path / "linux")
    (artifacts / f"app-hello-{LINUX}-1.cdx.json").unlink()
    ((kind, message),) = merge_problems(artifacts, tmp_path)
    assert kind is ProblemKind.SBOM
    assert message.startswith(f"SBOM app-hello-{LINUX}-1.cdx.json is missing from")


def test_merge_takes_venvstacks_outputs_without_sboms(tmp_path: Path) -> None:
    artifacts = make_publish_output(tmp_path / "linux")
    for sbom in artifacts.glob("*.cdx.json"):
        sbom.unlink()
    for record in artifacts.rglob("venvlayers-publish*.json"):
        record.unlink()  # what venvstacks writes: metadata and archives only
    merged = tmp_path / "merged"
    merge_publish_outputs([artifacts], merged, reporter=Reporter(io.StringIO()))
    assert not list(merged.glob("*.cdx.json")) and len(list(merged.glob("*.tar.xz"))) == 3


def test_merge_refuses_an_sbom_of_another_layer_or_lock(tmp_path: Path) -> None:
    artifacts = make_publish_output(tmp_path / "linux")
    sbom = artifacts / f"app-hello-{LINUX}-1.cdx.json"
    sbom.write_text(sbom.read_text().replace("sha256:2222", "sha256:9999"))
    framework = artifacts / f"framework-common-{LINUX}-1.cdx.json"
    framework.write_text(framework.read_text().replace('"framework-common"', '"other"'))
    problems = merge_problems(artifacts, tmp_path)
    assert [kind for kind, _ in problems] == [ProblemKind.SBOM, ProblemKind.SBOM]
    assert any("requirements-hash" in message for _, message in problems)
    assert any("metadata.component.name is 'other'" in message for _, message in problems)


def test_merge_refuses_an_sbom_that_is_not_cyclonedx(tmp_path: Path) -> None:
    artifacts = make_publish_output(tmp_path / "linux")
    (artifacts / f"cpython-3.12-{LINUX}-1.cdx.json").write_text('{"spdxVersion": "SPDX-2.3"}')
    ((kind, message),) = merge_problems(artifacts, tmp_path)
    assert kind is ProblemKind.SBOM and "not a CycloneDX SBOM" in message
    sbom = artifacts / f"app-hello-{LINUX}-1.cdx.json"
    sbom.write_text(sbom.read_text().replace('"CycloneDX"', '"OtherDX"'))
    (artifacts / f"cpython-3.12-{LINUX}-1.cdx.json").unlink()
    problems = merge_problems(artifacts, tmp_path)
    assert any("bomFormat is 'OtherDX'" in message for _, message in problems)


# --- which locked wheel was installed --------------------------------------------------------

LOCK = """\
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "Fast_Lib"
version = "1.0+local"
index = "https://pypi.org/simple"
wheels = [
  {{ url = "https://files.example/fast_lib-1.0+local-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", hashes = {{ sha256 = "{linux}" }} }},
  {{ url = "https://files.example/fast_lib-1.0+local-cp312-cp312-win_amd64.whl", hashes = {{ sha256 = "{win}" }} }},
]
"""


def test_the_installed_wheel_is_found_by_its_tags(tmp_path: Path) -> None:
    from packaging.tags import parse_tag

    lock = tmp_path / "pylock.toml"
    lock.write_text(LOCK.format(linux="1" * 64, win="2" * 64))
    entries = read_lock_entries(lock)
    entry = entries[("fast-lib", "1.0+local")]
    linux_tags = frozenset(parse_tag("cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"))
    dist = InstalledDist("Fast_Lib", "1.0+local", linux_tags, tmp_path)
    assert installed_wheel(dist, entry, "framework-x").sha256 == "1" * 64
    dist = InstalledDist(
        "Fast_Lib", "1.0+local", frozenset(parse_tag("cp312-cp312-win_amd64")), tmp_path
    )
    assert installed_wheel(dist, entry, "framework-x").sha256 == "2" * 64
    stranger = InstalledDist(
        "Fast_Lib", "1.0+local", frozenset(parse_tag("py3-none-any")), tmp_path
    )
    with pytest.raises(PublishError, match=r"layer framework-x: installed Fast_Lib 1\.0"):
        installed_wheel(stranger, LockedEntry("Fast_Lib", "1.0", "", entry.wheels), "framework-x")


def test_a_local_wheel_locked_by_path_is_found(tmp_path: Path) -> None:
    # `--local-wheels` folders: uv records the wheel's relative `path`, no `url`
    from packaging.tags import parse_tag

    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\n\n[[packages]]\nname = "torch"\nversion = "2.13.0+cpu"\n'
        'index = "file:///wheels"\n\n[[packages.wheels]]\n'
        'path = "../../wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"\n\n'
        f'[packages.wheels.hashes]\nsha256 = "{"3" * 64}"\n'
    )
    entry = read_lock_entries(lock)[("torch", "2.13.0+cpu")]
    dist = InstalledDist(
        "torch",
        "2.13.0+cpu",
        frozenset(parse_tag("cp311-cp311-manylinux_2_28_x86_64")),
        tmp_path,
    )
    wheel = installed_wheel(dist, entry, "framework-torch")
    assert wheel.sha256 == "3" * 64
    assert wheel.filename == "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_purls_follow_the_purl_spec() -> None:
    from venvlayers.publish.sbom import pypi_purl

    assert pypi_purl("Fast_Lib", "1.0+local", "https://pypi.org/simple") == (
        "pkg:pypi/fast-lib@1.0%2Blocal"
    )
    assert pypi_purl("x", "2", "https://mirror.example/simple") == (
        "pkg:pypi/x@2?repository_url=https://mirror.example/simple"
    )
