"""Hostile publish outputs given to `merge` (issue 25, cases 1-4): nothing is written
outside the merged output, no target but a regular file is written, no link is merged.

Each case is a publish output an attacker could shape (an artifact of a pull request's
job): names that are paths, links out of the input, report paths that are devices.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_merge import (
    LINUX,
    MAC,
    edit_publish_info,
    info_file,
    layer_file,
    make_publish_output,
    manifest_file,
)

from venvlayers.core.errors import StorageError
from venvlayers.core.fsutil import write_text_atomic


def merge(*args: str | Path) -> tuple[int, str]:
    """`venvlayers merge ARGS` in a child process with 1 GiB of address space at most
    (reading /dev/zero must end in an error, never take the machine's memory)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "venvlayers", "merge", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        preexec_fn=limit,
    )
    return done.returncode, done.stdout + done.stderr


def assert_refused(code: int, text: str, *words: str) -> None:
    assert code == 2, text
    assert "Traceback" not in text, text
    for word in words:
        assert word in text, text


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


# -- case 1: an untagged manifest's target_platform is a path -------------------------------


def untagged_output(root: Path, platform_value: str) -> Path:
    """A venvstacks-style untagged publish output whose layers say ``platform_value``."""
    make_publish_output(root, MAC)
    meta_root = root / "__venvstacks__"
    manifest = read(manifest_file(root, MAC))
    for entries in manifest["layers"].values():
        for entry in entries:
            entry["target_platform"] = platform_value
            layer_file(root, MAC, entry["layer_name"]).unlink()
            write(meta_root / "env_metadata" / f"{entry['layer_name']}.json", entry)
    manifest_file(root, MAC).unlink()
    info_file(root, MAC).unlink()
    for sbom in root.glob("*.cdx.json"):  # not required of venvstacks' outputs
        sbom.unlink()
    write(meta_root / "venvstacks.json", manifest)
    return root


def test_untagged_target_platform_that_is_a_path_writes_nothing_outside(tmp_path: Path) -> None:
    pwned = tmp_path / "elsewhere" / "PWNED"
    (tmp_path / "elsewhere").mkdir()
    evil = "x/" + "../" * 40 + str(pwned).lstrip("/")
    linux = make_publish_output(tmp_path / "in" / "linux", LINUX)
    other = untagged_output(tmp_path / "in" / "other", evil)
    out = tmp_path / "out" / "merged"
    code, text = merge(linux, other, "--output-dir", out)
    assert_refused(code, text, "not a platform tag")
    assert not pwned.with_suffix(".json").exists()
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert not out.exists()


# -- case 2: a layer_name that is a path ----------------------------------------------------


def rename_layer(root: Path, old: str, new: str) -> dict[str, Any]:
    """Give layer ``old`` of the LINUX output the name ``new`` (manifest and publish record);
    return its entry."""
    manifest = read(manifest_file(root, LINUX))
    found: dict[str, Any] = {}
    for entries in manifest["layers"].values():
        for entry in entries:
            if entry["layer_name"] == old:
                entry["layer_name"] = new
                found = entry
    write(manifest_file(root, LINUX), manifest)
    info = read(info_file(root, LINUX))
    edit_publish_info(root, LINUX, layers=[new if n == old else n for n in info["layers"]])
    return found


def test_layer_name_climbing_out_of_env_metadata_writes_nothing_above_the_output(
    tmp_path: Path,
) -> None:
    """``s/../../../../X`` reads ``artifacts/X-<platform>.json`` (which the attacker also
    uploaded) and, unchecked, writes ``X-<platform>.json`` beside the output folder."""
    artifacts = tmp_path / "artifacts"
    job = make_publish_output(artifacts / "stack-linux", LINUX)
    evil = "s/../../../../X"
    entry = rename_layer(job, "app-hello", evil)
    (job / "__venvstacks__" / "env_metadata" / "s").mkdir()
    write(artifacts / f"X-{LINUX}.json", entry)
    out = tmp_path / "out" / "merged"
    out.parent.mkdir()
    code, text = merge(artifacts, "--output-dir", out)
    assert_refused(code, text, "layer_name", "not a plain name")
    assert not (out.parent / f"X-{LINUX}.json").exists()
    assert not out.exists()


def test_layer_name_through_a_link_in_env_metadata_is_refused(tmp_path: Path) -> None:
    """``env_metadata/s`` a link to a folder outside the input: its file is never read."""
    artifacts = tmp_path / "artifacts"
    job = make_publish_output(artifacts / "stack-linux", LINUX)
    entry = rename_layer(job, "app-hello", "s/x")
    outside = tmp_path / "outside"
    write(outside / f"x-{LINUX}.json", entry)
    (job / "__venvstacks__" / "env_metadata" / "s").symlink_to(outside)
    out = tmp_path / "out"
    code, text = merge(artifacts, "--output-dir", out)
    assert_refused(code, text, "layer_name")
    assert not out.exists()


# -- case 3: --report (or any output) naming a device, a folder or a link ------------------


@pytest.mark.parametrize("kind", ["dev-zero", "folder", "link"])
def test_report_that_is_not_a_regular_file_is_an_error_before_any_work(
    tmp_path: Path, kind: str
) -> None:
    job = make_publish_output(tmp_path / "in", LINUX)
    out = tmp_path / "out"
    real = tmp_path / "real-report.md"
    real.write_text("untouched\n")
    report = {
        "dev-zero": Path("/dev/zero"),
        "folder": tmp_path / "a-folder",
        "link": tmp_path / "report-link.md",
    }[kind]
    if kind == "folder":
        report.mkdir()
    if kind == "link":
        report.symlink_to(real)  # /dev/stdout is such a link: it must never be replaced
    code, text = merge(job, "--output-dir", out, "--report", report)
    assert_refused(code, text, str(report), "not a regular file")
    assert not out.exists(), "nothing is merged when the report cannot be written"
    if kind == "link":
        assert report.is_symlink() and real.read_text() == "untouched\n"
    if kind == "folder":
        assert report.is_dir() and list(report.iterdir()) == []


@pytest.mark.parametrize("kind", ["folder", "link", "dangling-link"])
def test_atomic_writes_replace_regular_files_only(tmp_path: Path, kind: str) -> None:
    """In process, so no device here (an old reader would read /dev/zero forever); the
    CLI test above has one."""
    path = tmp_path / kind
    if kind == "folder":
        path.mkdir()
    else:
        (tmp_path / "real").write_text("untouched\n")
        path.symlink_to(tmp_path / ("real" if kind == "link" else "elsewhere"))
    with pytest.raises(StorageError, match="not a regular file"):
        write_text_atomic(path, "text\n")
    if kind != "folder":
        assert path.is_symlink() and (tmp_path / "real").read_text() == "untouched\n"
        assert not (tmp_path / "elsewhere").exists()
    regular = tmp_path / "regular.txt"
    assert write_text_atomic(regular, "a\n") and not write_text_atomic(regular, "a\n")


# -- case 4: an input archive that is a link to a file outside the input -------------------


def test_archive_linking_out_of_its_input_is_never_merged(tmp_path: Path) -> None:
    job = make_publish_output(tmp_path / "in", LINUX)
    archive = job / f"app-hello-{LINUX}-1.tar.xz"
    outside = tmp_path / "outside.tar.xz"
    archive.rename(outside)
    archive.symlink_to(outside)  # absolute, same bytes: size and sha256 match
    out = tmp_path / "out"
    code, text = merge(job, "--output-dir", out)
    assert_refused(code, text, "link leading out of")
    assert not out.exists()


def test_archive_linking_inside_its_input_is_merged_as_a_regular_file(tmp_path: Path) -> None:
    job = make_publish_output(tmp_path / "in", LINUX)
    archive = job / f"app-hello-{LINUX}-1.tar.xz"
    (job / "store").mkdir()
    archive.rename(job / "store" / archive.name)
    archive.symlink_to(Path("store") / archive.name)
    digest = hashlib.sha256((job / "store" / archive.name).read_bytes()).hexdigest()
    out = tmp_path / "out"
    code, text = merge(job, "--output-dir", out)
    assert code == 0, text
    assert not any(p.is_symlink() for p in all_files(out))
    assert hashlib.sha256((out / archive.name).read_bytes()).hexdigest() == digest
