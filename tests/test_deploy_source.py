"""Where deploy finds a platform's manifest, and how it checks one before fetching anything."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from venvlayers.core.errors import DeployError
from venvlayers.core.report import Reporter
from venvlayers.deploy.sources import FolderSource, find_manifest, open_source, select_layers
from venvlayers.formats.records import StackManifest
from venvlayers.net.downloads import Downloader

SHA = "a" * 64


def layer(name: str, category: str, platform: str = "linux_x86_64", **extra: Any) -> dict[str, Any]:
    return {
        "layer_name": name,
        "install_target": name,
        "requirements_hash": "sha256:00",
        "lock_version": 1,
        "locked_at": "2026-01-01T00:00:00+00:00",
        "archive_name": f"{name}-{platform}-1.tar.xz",
        "archive_hashes": {"sha256": SHA},
        "archive_size": 10,
        "target_platform": platform,
        **extra,
    }


def manifest(platform: str = "linux_x86_64", **app: Any) -> dict[str, Any]:
    return {
        "layers": {
            "runtimes": [layer("cpython-3.12", "runtimes", platform)],
            "frameworks": [
                layer("framework-base", "frameworks", platform, runtime_layer="cpython-3.12")
            ],
            "applications": [
                layer(
                    "app-one",
                    "applications",
                    platform,
                    runtime_layer="cpython-3.12",
                    required_layers=["framework-base"],
                    app_launch_module="one",
                )
                | app
            ],
        }
    }


@pytest.mark.parametrize(
    "where",
    [
        "__venvstacks__/venvstacks-linux_x86_64.json",
        "__venvstacks__/venvstacks.json",
        "venvstacks-linux_x86_64.json",
    ],
)
def test_every_layout_is_found(tmp_path: Path, where: str) -> None:
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / where).write_text(json.dumps(manifest()))
    found, label = find_manifest(FolderSource(tmp_path), "linux_x86_64")
    assert label.endswith(where) and len(found.layers["applications"]) == 1


def test_an_untagged_manifest_of_another_platform_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / "__venvstacks__").mkdir()
    (tmp_path / "__venvstacks__" / "venvstacks.json").write_text(
        json.dumps(manifest("macosx_arm64"))
    )
    with pytest.raises(DeployError, match="no stack manifest for linux_x86_64"):
        find_manifest(FolderSource(tmp_path), "linux_x86_64")


def test_selection_brings_what_an_app_needs_lowest_first() -> None:
    model = StackManifest.parse(manifest())
    chosen = select_layers(model, ["one"], "m", "linux_x86_64")
    assert [m.install_target for m in chosen] == ["cpython-3.12", "framework-base", "app-one"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"archive_name": "sub/app.tar.xz"}, "not a plain file name"),
        ({"archive_name": "app-one.exe"}, "does not end in"),
        ({"required_layers": ["framework-nope"]}, "'framework-nope'"),
        ({"install_target": "a/b"}, "not a plain folder name"),
        ({"install_target": ".hidden"}, "starts with '.'"),
        ({"install_target": "framework-base"}, "appears twice"),
        ({"target_platform": "win_amd64"}, "built for win_amd64"),
        ({"archive_hashes": {"sha256": "xyz"}}, "is not a sha256"),
    ],
)
def test_untrusted_metadata_is_checked(change: dict[str, Any], message: str) -> None:
    model = StackManifest.parse(manifest(**change))
    with pytest.raises(DeployError, match=message):
        select_layers(model, [], "m", "linux_x86_64")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://user:secret@mirror.example/stack/", "credentials in the URL"),
        ("github:just-a-name", "github:OWNER/REPO@TAG"),
        ("/no/such/folder", "not a folder"),
    ],
)
def test_sources_that_cannot_work_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    downloader = Downloader(tmp_path, reporter=Reporter(io.StringIO()))
    with pytest.raises(DeployError, match=message) as failure:
        open_source(text, downloader, Reporter(io.StringIO()), env={})
    assert "secret" not in str(failure.value) and "\n" not in str(failure.value)


def test_a_mirror_of_release_assets_is_read_with_githubs_names(tmp_path: Path) -> None:
    from rig.file_server import FileServer

    from venvlayers.deploy.sources import HttpSource

    served = tmp_path / "mirror"
    served.mkdir()
    (served / "venvstacks-linux_x86_64.json").write_text(json.dumps(manifest()))
    with FileServer(served) as server:
        source = HttpSource(
            server.url, Downloader(tmp_path / "c", reporter=Reporter(io.StringIO()))
        )
        found, _ = find_manifest(source, "linux_x86_64")
        app = found.layers["applications"][0]
        where = source.archive("app-x@2-linux_x86_64-1.tar.xz", app)
    assert where.download is not None
    assert where.download.url == server.url + "app-x.2-linux_x86_64-1.tar.xz"
