"""release: draft first, upload, check digests, publish — against immutable-release repositories."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from rig.github_double import Fault, GitHubDouble
from rig.release_output import ARCHIVES, merged_output

from venvlayers.cli.commands import main
from venvlayers.core.errors import ReleaseError
from venvlayers.core.report import Reporter
from venvlayers.release.create import ReleaseOptions, release_directory

TOKEN = "ghs_DraftSecret0123456789abcdefXYZ"
REPO = "octo-org/stacks"
TAG = "v2.0.0"
UPLOAD = r"^/api/uploads/repos/octo-org/stacks/releases/\d+/assets$"
EXPECTED = sorted(
    [*ARCHIVES.values(), "venvstacks-index.json", "venvstacks-linux_x86_64.json", "SHA256SUMS"]
)


@pytest.fixture
def double() -> Iterator[GitHubDouble]:
    with GitHubDouble(token=TOKEN, repo=REPO, immutable=True) as server:
        yield server


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return merged_output(tmp_path / "merged")


def env(double: GitHubDouble) -> dict[str, str]:
    return {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": double.api_url}


def release(double: GitHubDouble, out: Path, **options: object) -> object:
    return release_directory(
        out,
        tag=TAG,
        reporter=Reporter(io.StringIO()),
        environ=env(double),
        sleep=lambda _: None,
        options=ReleaseOptions(**options),  # type: ignore[arg-type]
    )


def test_immutable_repository_gets_a_complete_published_release(
    double: GitHubDouble, out: Path
) -> None:
    release(double, out)
    published = double.release_by_tag(TAG)
    assert published is not None and not published.draft
    # uploads happened while it was a draft; the release holds what deployers need, only
    assets = double.assets_of(TAG)
    assert sorted(a.name for a in assets) == EXPECTED
    assert all(a.digest == f"sha256:{hashlib.sha256(a.data).hexdigest()}" for a in assets)
    patches = double.requests_matching("PATCH", r"/releases/\d+$")
    uploads = double.requests_matching("POST", UPLOAD)
    assert len(patches) == 1 and max(u.number for u in uploads) < patches[0].number

    # GitHub (and the double) refuse to change a published immutable release...
    upload_url = f"{double.uploads_url}/repos/{REPO}/releases/{published.id}/assets"
    refused = requests.post(
        upload_url,
        params={"name": "late.txt"},
        data=b"late",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert refused.status_code == 422
    # ...and a re-run changes nothing, so it succeeds
    before = len(double.requests)
    release(double, out)
    assert [r for r in double.requests[before:] if r.method != "GET"] == []


def test_a_failed_upload_leaves_an_unpublished_draft_and_a_rerun_finishes(
    double: GitHubDouble, out: Path
) -> None:
    double.add_fault(Fault(method="POST", path=UPLOAD, nth=2, status=403, message="Forbidden"))
    with pytest.raises(ReleaseError):
        release(double, out)
    draft = double.release_by_tag(TAG)
    assert draft is not None and draft.draft  # nobody sees a half-uploaded release

    release(double, out)
    published = double.release_by_tag(TAG)
    assert published is not None and not published.draft
    assert sorted(a.name for a in double.assets_of(TAG)) == EXPECTED


def test_stray_assets_on_the_draft_are_removed_before_publishing(
    double: GitHubDouble, out: Path
) -> None:
    release_id = double.seed_release(TAG, draft=True)
    double.seed_asset(release_id, "old-notes.txt", b"left from an earlier try")
    release(double, out)
    assert sorted(a.name for a in double.assets_of(TAG)) == EXPECTED


def test_release_options_and_notes_file(
    double: GitHubDouble, out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("Hand-written notes\n")
    for key, value in env(double).items():
        monkeypatch.setenv(key, value)
    code = main(
        [
            "release",
            "--tag",
            TAG,
            "--name",
            "Stack two",
            "--prerelease",
            "--make-latest",
            "false",
            "--notes-file",
            str(notes),
            str(out),
        ]
    )
    assert code == 0
    made = double.release_by_tag(TAG)
    assert made is not None and not made.draft
    assert (made.name, made.body, made.prerelease, made.make_latest) == (
        "Stack two",
        "Hand-written notes\n",
        True,
        "false",
    )


def test_default_notes_list_the_layers_and_the_deploy_command(
    double: GitHubDouble, out: Path
) -> None:
    double.seed_release("v1.0.0")
    release(double, out)
    made = double.release_by_tag(TAG)
    assert made is not None
    assert made.body.startswith("## Changes since v1.0.0")
    assert "| `app-demo` | 3 |" in made.body
    assert f"venvlayers deploy --from github:{REPO}@{TAG} --target DIR APP" in made.body


def test_draft_option_keeps_it_a_draft(double: GitHubDouble, out: Path) -> None:
    release(double, out, draft=True)
    kept = double.release_by_tag(TAG)
    assert kept is not None and kept.draft
    assert double.requests_matching("PATCH", r"/releases/\d+$") == []


def test_adding_to_a_published_immutable_release_is_one_clear_error(
    double: GitHubDouble, out: Path
) -> None:
    release(double, out)
    index = json.loads((out / "venvstacks-index.json").read_text())
    extra = json.loads(json.dumps(index["layers"]["app-demo"]))
    name = "app-more-linux_x86_64-1.tar.xz"
    (out / name).write_bytes(b"more")
    extra["platforms"]["linux_x86_64"].update(
        archive_name=name, archive_size=4, sha256=hashlib.sha256(b"more").hexdigest()
    )
    index["layers"]["app-more"] = extra
    (out / "venvstacks-index.json").write_text(json.dumps(index))
    with pytest.raises(ReleaseError) as failure:
        release(double, out)
    message = str(failure.value)
    assert "already published" in message and "new tag" in message and TOKEN not in message
