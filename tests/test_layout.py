"""Where published metadata lives (venvstacks 0.8.0's layout) and how it is found, on real
folders; the lock time as venvstacks publishes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from venvlayers.formats.layout import MetadataSet, find_metadata_sets, find_publish_outputs
from venvlayers.publish.staging import published_time


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}\n")
    return path


def test_paths_are_venvstacks_own(tmp_path: Path) -> None:
    tagged = MetadataSet.for_output(tmp_path, "linux_x86_64")
    assert tagged.manifest == tmp_path / "__venvstacks__/venvstacks-linux_x86_64.json"
    assert tagged.env_metadata("app-x") == (
        tmp_path / "__venvstacks__/env_metadata/app-x-linux_x86_64.json"
    )
    assert tagged.publish_info == tmp_path / "__venvstacks__/venvlayers-publish-linux_x86_64.json"
    plain = MetadataSet.for_output(tmp_path, None)
    assert plain.manifest == tmp_path / "__venvstacks__/venvstacks.json"
    assert plain.env_metadata("cpython-3.12") == (
        tmp_path / "__venvstacks__/env_metadata/cpython-3.12.json"
    )
    assert plain.platform is None and tagged.platform == "linux_x86_64"
    assert plain.output_dir == tmp_path


def test_every_layout_is_found_from_any_of_its_folders(tmp_path: Path) -> None:
    out = tmp_path / "out dir"
    meta = out / "__venvstacks__"
    touch(meta / "venvstacks-linux_x86_64.json")
    touch(meta / "venvstacks-macosx_arm64.json")
    touch(meta / "venvstacks.json")
    touch(meta / "win_amd64" / "venvstacks.json")  # not venvstacks' layout: ignored
    touch(meta / "env_metadata" / "app-x-linux_x86_64.json")
    touch(meta / "venvstacks-index.json")  # never a manifest
    expected = [
        MetadataSet(meta, "-linux_x86_64"),
        MetadataSet(meta, "-macosx_arm64"),
        MetadataSet(meta, ""),
    ]
    assert find_metadata_sets(out) == expected
    assert find_metadata_sets(meta) == expected
    # a folder holding a manifest is read as a metadata folder
    assert find_metadata_sets(meta / "win_amd64") == [MetadataSet(meta / "win_amd64", "")]
    assert find_metadata_sets(meta / "venvstacks-macosx_arm64.json") == [expected[1]]
    assert find_metadata_sets(meta / "venvstacks-index.json") == []
    assert find_metadata_sets(tmp_path / "missing") == []
    # download-artifact's folder per artifact; the merge output itself is skipped
    downloads = tmp_path / "downloads"
    touch(downloads / "a" / "__venvstacks__" / "venvstacks-linux_x86_64.json")
    touch(downloads / "b" / "__venvstacks__" / "venvstacks-win_amd64.json")
    touch(downloads / "merged" / "__venvstacks__" / "venvstacks-win_amd64.json")
    found = find_publish_outputs(downloads, exclude=(downloads / "merged").resolve())
    assert [s.manifest.relative_to(downloads).as_posix() for s in found] == [
        "a/__venvstacks__/venvstacks-linux_x86_64.json",
        "b/__venvstacks__/venvstacks-win_amd64.json",
    ]


@pytest.mark.parametrize(
    ("recorded", "published"),
    [
        ("2026-11-24T10:01:17Z", "2026-11-24T10:01:17+00:00"),
        ("2026-12-01T20:23:24.863960+00:00", "2026-12-01T20:23:24.863960+00:00"),
        ("2026-12-01T22:23:24+02:00", "2026-12-01T20:23:24+00:00"),
        ("not a time", "not a time"),
    ],
)
def test_lock_time_is_published_as_venvstacks_does(recorded: str, published: str) -> None:
    assert published_time(recorded) == published
