"""Merging per-platform publish outputs: real archives, real metadata files, every check."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from venvlayers.core.errors import MergeError
from venvlayers.core.report import Reporter
from venvlayers.formats.layout import MetadataSet, find_publish_outputs
from venvlayers.release.merge import (
    INDEX_NAME,
    MergeConsistencyError,
    MergeReport,
    ProblemKind,
    merge_publish_outputs,
)

LINUX = "linux_x86_64"
MAC = "macosx_arm64"
SPEC_HASH = "sha256:" + "5" * 64
TOOL_VERSION = "0.1.0"

# (category, layer_name, extra metadata) as venvstacks publishes them
LAYERS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "runtimes",
        "cpython-3.12",
        {"python_implementation": "cpython@3.12.1", "bound_to_implementation": False},
    ),
    (
        "frameworks",
        "framework-common",
        {
            "runtime_layer": "cpython-3.12",
            "python_implementation": "cpython@3.12.1",
            "bound_to_implementation": False,
            "required_layers": [],
        },
    ),
    (
        "applications",
        "app-hello",
        {
            "runtime_layer": "cpython-3.12",
            "python_implementation": "cpython@3.12.1",
            "bound_to_implementation": False,
            "required_layers": ["framework-common"],
            "app_launch_module": "hello",
            "app_launch_module_hash": "sha256:" + "a" * 64,
        },
    ),
]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _make_archive(path: Path, install_target: str) -> None:
    """A small but real layer archive: install_target/ with a metadata file and a module."""
    payload = {
        f"{install_target}/share/venv/metadata/venvstacks_layer.json": b'{"python": "bin/python"}\n',
        f"{install_target}/lib/python3.12/site-packages/{install_target.replace('-', '_')}.py": (
            b"VALUE = 1\n" * 50
        ),
    }
    with tarfile.open(path, "w:xz") as tar:
        for name, data in payload.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))


def manifest_file(root: Path, platform: str) -> Path:
    """Where `publish --tag-outputs` puts a platform's manifest (venvstacks' own layout)."""
    return root / "__venvstacks__" / f"venvstacks-{platform}.json"


def layer_file(root: Path, platform: str, layer: str) -> Path:
    return root / "__venvstacks__" / "env_metadata" / f"{layer}-{platform}.json"


def info_file(root: Path, platform: str) -> Path:
    return root / "__venvstacks__" / f"venvlayers-publish-{platform}.json"


def make_publish_output(root: Path, platform: str = LINUX) -> Path:
    """One platform job's output in ``root``, exactly as `venvlayers publish --tag-outputs`
    writes it."""
    manifest: dict[str, list[dict[str, Any]]] = {
        "runtimes": [],
        "frameworks": [],
        "applications": [],
    }
    for index, (category, name, extra) in enumerate(LAYERS):
        archive_name = f"{name}-{platform}-1.tar.xz"
        archive = root / archive_name
        root.mkdir(parents=True, exist_ok=True)
        _make_archive(archive, name)
        meta = {
            "layer_name": name,
            "install_target": name,
            "requirements_hash": "sha256:" + f"{index}" * 64,
            "lock_version": 1,
            "locked_at": "2026-11-24T10:01:17Z",
            "archive_build": 1,
            "archive_name": archive_name,
            "target_platform": platform,
            "archive_size": archive.stat().st_size,
            "archive_hashes": {"sha256": hashlib.sha256(archive.read_bytes()).hexdigest()},
            **extra,
        }
        manifest[category].append(meta)
        _write_json(layer_file(root, platform, name), meta)
        _write_json(root / f"{name}-{platform}-1.cdx.json", _sbom(meta))
    _write_json(manifest_file(root, platform), {"layers": manifest})
    _write_json(
        info_file(root, platform),
        {
            "tool_version": TOOL_VERSION,
            "spec_hash": SPEC_HASH,
            "platform": platform,
            "layers": [name for _, name, _ in LAYERS],
        },
    )
    return root


def _sbom(meta: dict[str, Any]) -> dict[str, Any]:
    """The parts of a layer's SBOM that merge checks against its metadata."""
    properties = {
        "venvlayers:locked-at": meta["locked_at"],
        "venvlayers:requirements-hash": meta["requirements_hash"],
        "venvlayers:target-platform": meta["target_platform"],
    }
    component = {
        "type": "application",
        "bom-ref": f"venvlayers:layer/{meta['install_target']}",
        "name": meta["install_target"],
        "version": str(meta["lock_version"]),
        "properties": [{"name": k, "value": v} for k, v in properties.items()],
    }
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {"timestamp": meta["locked_at"], "component": component},
    }


def relabel(source: Path, target: Path, old: str, new: str) -> Path:
    """Copy a publish output and turn it into another platform's (names and metadata)."""
    shutil.copytree(source, target)
    for path in sorted(target.rglob("*")):
        if path.is_file() and old in path.name:
            path = path.rename(path.with_name(path.name.replace(old, new)))
        if path.suffix == ".json":
            path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    return target


def edit_layer(root: Path, platform: str, layer: str, **changes: Any) -> None:
    """Change one layer's published metadata consistently (manifest and env_metadata)."""
    manifest = _read_json(manifest_file(root, platform))
    for entries in manifest["layers"].values():
        for entry in entries:
            if entry["layer_name"] == layer:
                entry.update(changes)
                _write_json(layer_file(root, platform, layer), entry)
                sbom = root / entry["archive_name"].replace(".tar.xz", ".cdx.json")
                _write_json(sbom, _sbom(entry))  # a republished layer has a matching SBOM
    _write_json(manifest_file(root, platform), manifest)


def edit_publish_info(root: Path, platform: str, **changes: Any) -> None:
    path = info_file(root, platform)
    info = _read_json(path)
    info.update(changes)
    _write_json(path, info)


@pytest.fixture
def reporter() -> Reporter:
    return Reporter(io.StringIO())


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Two platform jobs' outputs as download-artifact leaves them: one folder per artifact."""
    downloads = tmp_path / "artifacts"
    linux = make_publish_output(downloads / f"stack-{LINUX}", LINUX)
    relabel(linux, downloads / f"stack-{MAC}", LINUX, MAC)
    return downloads


def _fail(inputs: list[Path], out: Path, reporter: Reporter, **kwargs: Any) -> MergeReport:
    with pytest.raises(MergeConsistencyError) as caught:
        merge_publish_outputs(inputs, out, reporter=reporter, **kwargs)
    assert not out.exists(), "nothing may be written on failure"
    assert not any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir())
    report = caught.value.report
    count = len(report.problems)
    assert (
        str(caught.value)
        == f"{count} consistency problem{'' if count == 1 else 's'}; see the report"
    )
    return report


def _kinds(report: MergeReport) -> list[tuple[ProblemKind, str | None, str | None]]:
    return [(p.kind, p.layer, p.platform) for p in report.problems]


# ------------------------------------------------------------------ happy path


def test_merge_writes_archives_metadata_and_index(
    artifacts: Path, tmp_path: Path, reporter: Reporter
) -> None:
    out = tmp_path / "release"
    report_path = tmp_path / "merge-report.md"
    report = merge_publish_outputs(
        [artifacts],
        out,
        reporter=reporter,
        expected_platforms=[LINUX, MAC],
        report_path=report_path,
    )
    assert report.ok
    assert report.platforms == [LINUX, MAC]
    assert report.layer_counts == {LINUX: 3, MAC: 3}

    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "__venvstacks__",
            INDEX_NAME,
            *(f"{name}-{plat}-1.tar.xz" for _, name, _ in LAYERS for plat in (LINUX, MAC)),
            *(f"{name}-{plat}-1.cdx.json" for _, name, _ in LAYERS for plat in (LINUX, MAC)),
        ]
    )
    # Archives are hard links to the downloaded files (same file system here)
    source = artifacts / f"stack-{MAC}" / f"app-hello-{MAC}-1.tar.xz"
    assert os.stat(out / source.name).st_ino == os.stat(source).st_ino
    with tarfile.open(out / source.name) as tar:
        assert "app-hello/share/venv/metadata/venvstacks_layer.json" in tar.getnames()
    for plat in (LINUX, MAC):
        source_root = artifacts / f"stack-{plat}"
        for file in (manifest_file, info_file):
            assert file(out, plat).read_bytes() == file(source_root, plat).read_bytes()
        assert layer_file(out, plat, "framework-common").read_bytes() == (
            layer_file(source_root, plat, "framework-common").read_bytes()
        )

    index = _read_json(out / INDEX_NAME)
    assert index["platforms"] == [LINUX, MAC]
    assert index["spec_hash"] == SPEC_HASH
    assert index["tool_version"] == TOOL_VERSION
    assert list(index["layers"]) == ["app-hello", "cpython-3.12", "framework-common"]
    framework = index["layers"]["framework-common"]
    linux_archive = artifacts / f"stack-{LINUX}" / f"framework-common-{LINUX}-1.tar.xz"
    assert framework == {
        "category": "frameworks",
        "install_target": "framework-common",
        "lock_version": 1,
        "requirements_hash": "sha256:" + "1" * 64,
        "locked_at": "2026-11-24T10:01:17Z",
        "platforms": {
            plat: {
                "archive_name": f"framework-common-{plat}-1.tar.xz",
                "archive_size": linux_archive.stat().st_size,
                "sha256": hashlib.sha256(linux_archive.read_bytes()).hexdigest(),
                "archive_build": 1,
                "metadata": f"__venvstacks__/env_metadata/framework-common-{plat}.json",
            }
            for plat in (LINUX, MAC)
        },
    }

    markdown = report_path.read_text(encoding="utf-8")
    assert markdown == report.to_markdown()
    assert markdown.startswith("## Stack merge: 3 layers on 2 platforms — ✅ consistent\n")
    assert f"| Layer | `{LINUX}` | `{MAC}` |" in markdown
    size = linux_archive.stat().st_size
    assert f"| `framework-common` | ✅ {size} B | ✅ {size} B |" in markdown
    assert "| **layers** | 3 | 3 |" in markdown
    assert "Problems" not in markdown


def test_merge_is_deterministic_and_replaces_previous_output(
    artifacts: Path, tmp_path: Path, reporter: Reporter
) -> None:
    out = tmp_path / "release"
    merge_publish_outputs([artifacts], out, reporter=reporter)
    first = (out / INDEX_NAME).read_bytes()
    (out / "stale-file.tar.xz").write_bytes(b"left over from an older merge")
    merge_publish_outputs([artifacts], out, reporter=reporter)
    assert (out / INDEX_NAME).read_bytes() == first
    assert not (out / "stale-file.tar.xz").exists()
    assert first.endswith(b"}\n")


def test_merge_accepts_separate_inputs_and_merge_multiple_layout(
    tmp_path: Path, reporter: Reporter
) -> None:
    linux = make_publish_output(tmp_path / "linux", LINUX)
    mac = relabel(linux, tmp_path / "mac", LINUX, MAC)
    # Separate artifact folders passed one by one
    report = merge_publish_outputs([linux, mac], tmp_path / "out1", reporter=reporter)
    assert report.platforms == [LINUX, MAC]
    # download-artifact with merge-multiple: everything in one folder
    combined = tmp_path / "combined"
    shutil.copytree(linux, combined)
    shutil.copytree(mac, combined, dirs_exist_ok=True)
    assert find_publish_outputs(combined) == [
        MetadataSet(combined / "__venvstacks__", f"-{LINUX}"),
        MetadataSet(combined / "__venvstacks__", f"-{MAC}"),
    ]
    report = merge_publish_outputs([combined], tmp_path / "out2", reporter=reporter)
    assert report.layer_counts == {LINUX: 3, MAC: 3}
    assert (tmp_path / "out1" / INDEX_NAME).read_bytes() == (
        tmp_path / "out2" / INDEX_NAME
    ).read_bytes()


def test_layer_not_targeting_a_platform_is_not_a_problem(
    artifacts: Path, tmp_path: Path, reporter: Reporter
) -> None:
    """Platform narrowing: app-hello is not built for macOS, and the publish info says so."""
    mac = artifacts / f"stack-{MAC}"
    manifest = _read_json(manifest_file(mac, MAC))
    manifest["layers"]["applications"] = []
    _write_json(manifest_file(mac, MAC), manifest)
    layer_file(mac, MAC, "app-hello").unlink()
    (mac / f"app-hello-{MAC}-1.tar.xz").unlink()
    edit_publish_info(mac, MAC, layers=["cpython-3.12", "framework-common"])

    report = merge_publish_outputs([artifacts], tmp_path / "out", reporter=reporter)
    assert report.layer_counts == {LINUX: 3, MAC: 2}
    index = _read_json(tmp_path / "out" / INDEX_NAME)
    assert list(index["layers"]["app-hello"]["platforms"]) == [LINUX]
    assert "| `app-hello` | ✅" in report.to_markdown()
    assert "| — |" in report.to_markdown()


def test_output_dir_must_not_hold_the_inputs(artifacts: Path, reporter: Reporter) -> None:
    with pytest.raises(MergeError, match="inside the output folder"):
        merge_publish_outputs([artifacts / f"stack-{LINUX}"], artifacts, reporter=reporter)
    with pytest.raises(MergeError, match="no input folders"):
        merge_publish_outputs([], artifacts / "out", reporter=reporter)


# ------------------------------------------------------------------ one test per inconsistency


def test_different_requirements_hash(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    edit_layer(
        artifacts / f"stack-{MAC}", MAC, "framework-common", requirements_hash="sha256:" + "f" * 64
    )
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.LOCK_MISMATCH, "framework-common", None)]
    assert report.problems[0].message == (
        f"requirements_hash differs between platforms ({LINUX}: sha256:{'1' * 64},"
        f" {MAC}: sha256:{'f' * 64}); build every platform from the same commit of requirements/"
    )


def test_different_lock_version_and_locked_at(
    artifacts: Path, tmp_path: Path, reporter: Reporter
) -> None:
    edit_layer(
        artifacts / f"stack-{LINUX}",
        LINUX,
        "app-hello",
        lock_version=2,
        locked_at="2026-12-01T00:00:00Z",
    )
    report = _fail([artifacts], tmp_path / "out", reporter)
    messages = [p.message for p in report.problems]
    assert _kinds(report) == [
        (ProblemKind.LOCK_MISMATCH, "app-hello", None),
        (ProblemKind.LOCK_MISMATCH, "app-hello", None),
    ]
    assert any(
        m.startswith(f"lock_version differs between platforms ({LINUX}: 2, {MAC}: 1)")
        for m in messages
    )
    assert any(m.startswith("locked_at differs between platforms") for m in messages)


def test_missing_archive_for_targeted_platform(
    artifacts: Path, tmp_path: Path, reporter: Reporter
) -> None:
    mac = artifacts / f"stack-{MAC}"
    (mac / f"framework-common-{MAC}-1.tar.xz").unlink()
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.MISSING_ARCHIVE, "framework-common", MAC)]
    assert report.problems[0].message == (
        f"archive framework-common-{MAC}-1.tar.xz is missing from {mac}; upload it with the metadata"
    )


def test_targeted_layer_not_published(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    """The job's publish info says app-hello targets macOS, but it was not published."""
    mac = artifacts / f"stack-{MAC}"
    manifest = _read_json(manifest_file(mac, MAC))
    manifest["layers"]["applications"] = []
    _write_json(manifest_file(mac, MAC), manifest)
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.MISSING_LAYER, "app-hello", MAC)]
    assert report.problems[0].message == f"targets {MAC} but its archive was not published"
    assert "| `app-hello` | ✅" in report.to_markdown()
    assert "❌ missing |" in report.to_markdown()


def test_size_mismatch(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    linux = artifacts / f"stack-{LINUX}"
    archive = linux / f"cpython-3.12-{LINUX}-1.tar.xz"
    real = archive.stat().st_size
    edit_layer(linux, LINUX, "cpython-3.12", archive_size=real + 10)
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.SIZE_MISMATCH, "cpython-3.12", LINUX)]
    assert report.problems[0].message.startswith(
        f"{archive} is {real} bytes but the metadata says {real + 10};"
    )
    assert f"| `cpython-3.12` | ❌ {real + 10} B | ✅ {real} B |" in report.to_markdown()


def test_sha256_mismatch(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    """An archive replaced by different bytes of the same length (e.g. a partial re-upload)."""
    archive = artifacts / f"stack-{MAC}" / f"app-hello-{MAC}-1.tar.xz"
    expected = hashlib.sha256(archive.read_bytes()).hexdigest()
    data = bytearray(archive.read_bytes())
    data[-20] ^= 0xFF
    archive.unlink()  # break the hard link with the Linux copy, if any
    archive.write_bytes(bytes(data))
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.HASH_MISMATCH, "app-hello", MAC)]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    assert report.problems[0].message == (
        f"{archive} has sha256 {actual} but the metadata says {expected}; republish this platform"
    )


def test_duplicate_archive_name(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    """Publishing without --tag-outputs gives every platform the same archive names."""
    mac = artifacts / f"stack-{MAC}"
    untagged = f"framework-common-{LINUX}-1.tar.xz"
    (mac / f"framework-common-{MAC}-1.tar.xz").rename(mac / untagged)
    edit_layer(mac, MAC, "framework-common", archive_name=untagged)
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.DUPLICATE_ARCHIVE, "framework-common", None)]
    assert report.problems[0].message == (
        f"archive name {untagged} is used by framework-common on {LINUX}, framework-common on {MAC};"
        " publish with --tag-outputs so archive names include the platform"
    )


def test_different_spec_hash(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    edit_publish_info(artifacts / f"stack-{MAC}", MAC, spec_hash="sha256:" + "9" * 64)
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.SPEC_MISMATCH, None, None)]
    assert report.problems[0].message == (
        f"the platform jobs ran different stack specs (spec_hash {LINUX}: {SPEC_HASH},"
        f" {MAC}: sha256:{'9' * 64}); rerun every platform job from the same commit"
    )


def test_different_tool_version(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    edit_publish_info(artifacts / f"stack-{LINUX}", LINUX, tool_version="0.2.0")
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.TOOL_MISMATCH, None, None)]
    assert report.problems[0].message == (
        f"the platform jobs ran different venvlayers versions (tool_version {LINUX}: 0.2.0,"
        f" {MAC}: {TOOL_VERSION}); rerun every platform job from the same commit"
    )


def test_unexpected_extra_layer(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    """The spec does not target macOS for app-hello, yet the job published it."""
    mac = artifacts / f"stack-{MAC}"
    edit_publish_info(mac, MAC, layers=["cpython-3.12", "framework-common"])
    report = _fail([artifacts], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.UNEXPECTED_LAYER, "app-hello", MAC)]
    assert report.problems[0].message == (
        f"was published for {MAC}, which the spec does not target for it"
        f" (per {info_file(mac, MAC)})"
    )


def test_missing_expected_platform(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    report = _fail(
        [artifacts], tmp_path / "out", reporter, expected_platforms=[LINUX, MAC, "win_amd64"]
    )
    assert _kinds(report) == [(ProblemKind.MISSING_PLATFORM, None, "win_amd64")]
    assert report.problems[0].message == (
        "no publish output for expected platform win_amd64; did its matrix job fail?"
    )
    assert report.missing_platforms == ["win_amd64"]
    assert "| `app-hello` | ✅" in report.to_markdown()
    assert "❌ no output |" in report.to_markdown()


def test_duplicate_platform(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    again = tmp_path / "rerun"
    shutil.copytree(artifacts / f"stack-{LINUX}", again)
    report = _fail([artifacts, again], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.DUPLICATE_PLATFORM, None, LINUX)]
    assert report.problems[0].message.startswith("published twice: ")
    assert str(manifest_file(again, LINUX)) in report.problems[0].message


def test_input_without_publish_output(artifacts: Path, tmp_path: Path, reporter: Reporter) -> None:
    empty = tmp_path / "failed-job"
    empty.mkdir()
    report = _fail([artifacts, empty], tmp_path / "out", reporter)
    assert _kinds(report) == [(ProblemKind.NO_OUTPUT, None, None)]
    assert str(empty) in report.problems[0].message


def test_every_problem_is_reported_at_once(
    artifacts: Path, tmp_path: Path, reporter: Reporter
) -> None:
    mac = artifacts / f"stack-{MAC}"
    linux = artifacts / f"stack-{LINUX}"
    edit_publish_info(mac, MAC, spec_hash="sha256:" + "9" * 64)
    (linux / f"app-hello-{LINUX}-1.tar.xz").unlink()
    edit_layer(mac, MAC, "cpython-3.12", requirements_hash="sha256:" + "e" * 64)
    report_path = tmp_path / "report.md"
    stream = io.StringIO()
    report = _fail(
        [artifacts],
        tmp_path / "out",
        Reporter(stream),
        expected_platforms=[LINUX, MAC, "win_arm64"],
        report_path=report_path,
    )
    assert sorted(_kinds(report), key=str) == sorted(
        [
            (ProblemKind.SPEC_MISMATCH, None, None),
            (ProblemKind.MISSING_PLATFORM, None, "win_arm64"),
            (ProblemKind.MISSING_ARCHIVE, "app-hello", LINUX),
            (ProblemKind.LOCK_MISMATCH, "cpython-3.12", None),
        ],
        key=str,
    )
    markdown = report_path.read_text(encoding="utf-8")
    assert markdown == report.to_markdown()
    assert markdown.startswith(
        "## Stack merge: 3 layers on 3 platforms — ❌ 4 consistency problems\n"
    )
    assert "### Problems (4)" in markdown
    assert (
        f"- **missing-archive** `app-hello` on `{LINUX}`: archive app-hello-{LINUX}-1.tar.xz"
        in markdown
    )
    assert "- **spec-mismatch**: the platform jobs ran different stack specs" in markdown
    # Each problem is also logged as an error line (a GitHub annotation under Actions)
    logged = stream.getvalue()
    assert logged.count("error: ") == 4
    assert "error: lock-mismatch: cpython-3.12: requirements_hash differs" in logged
    assert f"error: missing-archive: app-hello on {LINUX}: archive" in logged
