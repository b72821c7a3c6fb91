"""Hostile `runtime-mirror` inputs (issue 25, case 14): only real install_only archives, names
matched to their very end, and a plain http(s) ``--base-url``.

The downloads JSON this command writes tells uv (and every machine reading the mirror)
where to fetch CPython from: nothing in it may come from a file that is not an archive,
a name with a line break, or a URL with credentials, quotes or a relative path.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from venvlayers.cli.commands import main

NAME = "cpython-3.12.1+20240107-x86_64-unknown-linux-gnu-install_only.tar.gz"


def runtime_archive(path: Path, top: str = "python") -> Path:
    """A small gzip tar laid out like python-build-standalone's install_only archives."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in ((f"{top}/bin/python3.12", b"#!fake\n"), (f"{top}/lib/x.py", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def mirror(tmp_path: Path, archive: Path, *extra: str) -> int:
    return main(
        ["runtime-mirror", "--output", str(tmp_path / "downloads.json"), *extra, str(archive)]
    )


def test_a_real_archive_with_a_plain_base_url_is_listed(tmp_path: Path) -> None:
    archive = runtime_archive(tmp_path / NAME)
    assert mirror(tmp_path, archive, "--base-url", "https://mirror.example:8443/python/") == 0
    [entry] = json.loads((tmp_path / "downloads.json").read_text()).values()
    assert entry["url"] == f"https://mirror.example:8443/python/{NAME}"


@pytest.mark.parametrize(
    "content",
    [b"not an archive at all\n", b"\x1f\x8b\x08\x00broken gzip", b"\x28\xb5\x2f\xfd\x00"],
    ids=["text", "broken-gzip", "broken-zstd"],
)
def test_a_file_that_is_not_an_archive_is_refused(tmp_path: Path, content: bytes) -> None:
    archive = tmp_path / NAME
    archive.write_bytes(content)
    assert mirror(tmp_path, archive) == 2
    assert not (tmp_path / "downloads.json").exists()


def test_an_archive_of_something_else_is_refused(tmp_path: Path) -> None:
    archive = runtime_archive(tmp_path / NAME, top="not-python")
    assert mirror(tmp_path, archive) == 2
    assert not (tmp_path / "downloads.json").exists()


def test_a_name_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    archive = runtime_archive(tmp_path / (NAME + "\n"))
    assert mirror(tmp_path, archive) == 2
    assert not (tmp_path / "downloads.json").exists()


@pytest.mark.parametrize(
    "base_url",
    [
        'https://mirror.example/py"thon',
        "https://mirror.example/py thon",
        "https://mirror.example/python\nX-Injected: 1",
        "https://user:secret@mirror.example/python",
        "file:../..",
        "file:///srv/python",
        "ftp://mirror.example/python",
        "https://mirror.example/python?token=1",
        "mirror.example/python",
    ],
)
def test_a_base_url_that_is_not_a_plain_http_url_is_refused(
    tmp_path: Path, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = runtime_archive(tmp_path / NAME)
    assert mirror(tmp_path, archive, "--base-url", base_url) == 2
    assert not (tmp_path / "downloads.json").exists()
    assert "secret" not in capsys.readouterr().err
