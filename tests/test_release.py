"""venvlayers.release.create against a real HTTP GitHub double, through the real PyGithub."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rig.github_double import Fault, GitHubDouble

from venvlayers.cli.commands import main
from venvlayers.core.errors import ReleaseError
from venvlayers.core.report import GitHubReporter, Reporter
from venvlayers.release.create import (
    SHA256SUMS_NAME,
    ReleaseOptions,
    ReleaseResult,
    release_directory,
    upload_release,
    write_sha256sums,
)

TOKEN = "ghs_DoubleSecret0123456789abcdefXYZ"
REPO = "octo-org/stacks"
TAG = "v1.2.0"
UPLOAD = r"^/api/uploads/repos/octo-org/stacks/releases/\d+/assets$"
CREATE = r"^/api/v3/repos/octo-org/stacks/releases$"
ARCHIVES = [
    "cpython-3.12-linux_x86_64-1.tar.xz",
    "framework-numpy-linux_x86_64-1.tar.xz",
    "app-demo-linux_x86_64-1.tar.xz",
]
INDEX = "venvstacks-index.json"
MANIFEST = "venvstacks-linux_x86_64.json"
MANIFEST_PATH = "__venvstacks__/venvstacks-linux_x86_64.json"


@pytest.fixture
def double() -> Iterator[GitHubDouble]:
    with GitHubDouble(token=TOKEN, repo=REPO) as server:
        yield server


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A merge output folder: a few archives (big enough to be cut mid-upload) + index."""
    folder = tmp_path / "out"
    folder.mkdir()
    rng = random.Random(1234)
    layers = {}
    for i, name in enumerate(ARCHIVES):
        (folder / name).write_bytes(rng.randbytes(200_000 + 1000 * i))
        layer = name.split("-linux_x86_64")[0]
        entry = {
            "archive_name": name,
            "archive_size": 200_000 + 1000 * i,
            "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            "metadata": f"__venvstacks__/env_metadata/{layer}-linux_x86_64.json",
        }
        layers[layer] = {
            "category": "runtimes",
            "install_target": layer,
            "lock_version": 1,
            "requirements_hash": "sha256:00",
            "locked_at": "2026-01-01T00:00:00+00:00",
            "platforms": {"linux_x86_64": entry},
        }
    index = {"format_version": 1, "platforms": ["linux_x86_64"], "layers": layers}
    (folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    (folder / MANIFEST_PATH).parent.mkdir(parents=True)
    (folder / MANIFEST_PATH).write_text('{"layers": {}}\n')
    return folder


def local_file(out: Path, name: str) -> Path:
    return out / (MANIFEST_PATH if name == MANIFEST else name)


class Sleeps:
    """Injected sleep: records the delays asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def run(
    double: GitHubDouble,
    out: Path,
    sleeps: Sleeps,
    *,
    reporter: Reporter | None = None,
    **options: Any,
) -> ReleaseResult:
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": double.api_url}
    return release_directory(
        out,
        tag=TAG,
        reporter=reporter or Reporter(io.StringIO()),
        environ=env,
        sleep=sleeps,
        deadline_seconds=options.pop("deadline_seconds", 120),
        **options,
    )


def expected_names() -> list[str]:
    return sorted([*ARCHIVES, INDEX, MANIFEST])


def assert_release_complete(double: GitHubDouble, out: Path) -> None:
    """Every local file is on the release exactly once, uploaded, with its own bytes."""
    assets = double.assets_of(TAG)
    names = [a.name for a in assets]
    assert sorted(names) == sorted([*expected_names(), SHA256SUMS_NAME])
    for asset in assets:
        data = local_file(out, asset.name).read_bytes()
        assert asset.state == "uploaded"
        assert asset.data == data
        assert asset.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"


# ---------------------------------------------------------------------------
# SHA256SUMS


def test_sha256sums_is_sorted_gnu_format_and_verifies_with_sha256sum(tmp_path: Path) -> None:
    (tmp_path / "b.tar.xz").write_bytes(b"bee")
    (tmp_path / "a.json").write_bytes(b"ay")
    target = write_sha256sums(tmp_path, ["b.tar.xz", "a.json"])
    assert target == tmp_path / SHA256SUMS_NAME
    assert target.read_text() == (
        f"{hashlib.sha256(b'ay').hexdigest()}  a.json\n"
        f"{hashlib.sha256(b'bee').hexdigest()}  b.tar.xz\n"
    )
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        pytest.skip("GNU sha256sum not installed")
    checked = subprocess.run(
        [sha256sum, "-c", SHA256SUMS_NAME], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ---------------------------------------------------------------------------
# Happy path and idempotency


def test_creates_release_and_uploads_everything_through_enterprise_paths(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    result = run(double, out, sleeps, options=ReleaseOptions(name="Stack 1.2", body="notes"))

    release = double.release_by_tag(TAG)
    assert release is not None and not release.draft
    assert (release.name, release.body) == ("Stack 1.2", "notes")
    assert result.html_url == f"{double.base_url}/{REPO}/releases/tag/{TAG}"
    # SHA256SUMS goes last, so its presence means the others are complete
    assert result.uploaded == [*expected_names(), SHA256SUMS_NAME]
    assert result.skipped == result.replaced == []
    assert_release_complete(double, out)
    sums = (out / SHA256SUMS_NAME).read_text().splitlines()
    assert [line.split("  ")[1] for line in sums] == expected_names()
    # API calls under GITHUB_API_URL, uploads at the release's upload_url, never elsewhere
    paths = [r.path for r in double.requests]
    assert all(p.startswith(("/api/v3/", "/api/uploads/")) for p in paths)
    assert len(double.requests_matching("POST", UPLOAD)) == 6
    assert all(r.headers["authorization"] in ("token ***", "Bearer ***") for r in double.requests)
    assert sleeps.delays == []


def test_second_run_uploads_nothing(double: GitHubDouble, out: Path, sleeps: Sleeps) -> None:
    run(double, out, sleeps)
    before = len(double.requests)

    result = run(double, out, sleeps)

    assert result.uploaded == result.replaced == []
    assert result.skipped == [*expected_names(), SHA256SUMS_NAME]
    later = double.requests[before:]
    assert [r for r in later if r.method != "GET"] == []
    # the digest GitHub reports is enough: nothing is downloaded to compare
    assert not any("octet-stream" in r.headers.get("accept", "") for r in later)
    assert_release_complete(double, out)


def test_draft_release_is_found_again_on_rerun(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    first = run(double, out, sleeps, options=ReleaseOptions(draft=True))
    second = run(double, out, sleeps, options=ReleaseOptions(draft=True))

    assert len(double.releases) == 1
    release = double.release_by_tag(TAG)
    assert release is not None and release.draft
    assert "untagged-" in first.html_url
    assert second.uploaded == []
    assert_release_complete(double, out)


def test_api_url_comes_from_github_api_url(
    double: GitHubDouble, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", double.api_url + "/")
    result = upload_release(
        repo=REPO,
        tag=TAG,
        assets=[out / INDEX],
        token=TOKEN,
        reporter=Reporter(io.StringIO()),
    )
    assert result.uploaded == [INDEX]
    assert [a.name for a in double.assets_of(TAG)] == [INDEX]


def test_cli_deadline_bounds_the_retries(
    double: GitHubDouble,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Through the command line, with real sleeps: 1 s + 2 s of backoff, then the next wait
    # (4 s) would pass the 6-second deadline (2 s of slack for a slow machine).
    double.add_fault(Fault(method="GET", path=r"/repos/octo-org/stacks$", times=1000, status=502))
    for name, value in {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": double.api_url}.items():
        monkeypatch.setenv(name, value)
    code = main(["release", "--tag", TAG, "--repo", REPO, "--deadline", "6", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "gave up trying to open repository" in err and "(deadline 6 s)" in err
    assert len(double.requests) == 3
    assert TOKEN not in err


def test_many_assets_are_read_across_pages(
    double: GitHubDouble, tmp_path: Path, sleeps: Sleeps
) -> None:
    release_id = double.seed_release(TAG)
    files = []
    for i in range(105):
        path = tmp_path / f"part-{i:03d}.bin"
        path.write_bytes(f"part {i}".encode())
        double.seed_asset(release_id, path.name, path.read_bytes())
        files.append(path)

    result = upload_release(
        repo=REPO,
        tag=TAG,
        assets=files,
        token=TOKEN,
        api_url=double.api_url,
        reporter=Reporter(io.StringIO()),
        sleep=sleeps,
    )

    assert result.uploaded == [] and len(result.skipped) == 105
    pages = double.requests_matching("GET", rf"/releases/{release_id}/assets$")
    assert [r.query.get("page", "1") for r in pages] == ["1", "2"]


# ---------------------------------------------------------------------------
# Faults: each ends with every asset present exactly once with the right digest


FAULTS = {
    "502 on create": Fault(method="POST", path=CREATE, status=502),
    "502 after create (lost answer)": Fault(method="POST", path=CREATE, status=502, after=True),
    "502 on upload": Fault(method="POST", path=UPLOAD, nth=2, status=503),
    "502 after upload (lost answer)": Fault(method="POST", path=UPLOAD, nth=2, after=True),
    "403 rate limit with reset": Fault(kind="rate_limit", method="POST", path=UPLOAD, reset_in=30),
    "429 Retry-After": Fault(kind="retry_after", method="POST", path=UPLOAD, nth=3, retry_after=7),
    "403 secondary limit Retry-After": Fault(
        kind="retry_after", status=403, method="GET", path=r"/stacks$", retry_after=11
    ),
    "dropped connection mid-upload": Fault(kind="drop", method="POST", path=UPLOAD, nth=2),
    "502 on listing releases": Fault(method="GET", path=r"/releases/tags/", status=500),
}


@pytest.mark.parametrize("fault", list(FAULTS.values()), ids=list(FAULTS))
def test_fault_is_retried_to_a_complete_release(
    double: GitHubDouble, out: Path, sleeps: Sleeps, fault: Fault
) -> None:
    fault = double.add_fault(dataclasses.replace(fault, seen=0, fired=0))
    result = run(double, out, sleeps)

    assert fault.fired == 1
    assert len(double.releases) == 1
    assert_release_complete(double, out)
    assert sorted(result.uploaded) == sorted([*expected_names(), SHA256SUMS_NAME])
    assert len(sleeps.delays) == 1
    if fault.kind == "rate_limit":
        assert 30 <= sleeps.delays[0] <= 32  # until X-RateLimit-Reset, plus a second of slack
    elif fault.kind == "retry_after":
        assert sleeps.delays == [fault.retry_after]
    if fault.kind == "drop":
        # the "starter" leftover was removed before the retry
        assert len(double.requests_matching("DELETE", r"/releases/assets/\d+$")) == 1


def test_preexisting_starter_asset_is_deleted_and_uploaded_again(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    release_id = double.seed_release(TAG)
    double.seed_asset(release_id, ARCHIVES[0], b"half an arch", state="starter")
    double.seed_asset(release_id, INDEX, (out / INDEX).read_bytes())

    result = run(double, out, sleeps)

    assert ARCHIVES[0] in result.uploaded
    assert result.skipped == [INDEX]
    assert len(double.requests_matching("DELETE", r"/releases/assets/\d+$")) == 1
    assert_release_complete(double, out)


def test_same_name_other_content_fails_unless_replace(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    release_id = double.seed_release(TAG)
    double.seed_asset(release_id, ARCHIVES[1], b"an older build of this layer")

    with pytest.raises(ReleaseError) as failure:
        run(double, out, sleeps)
    message = str(failure.value)
    assert ARCHIVES[1] in message and "--replace" in message and TAG in message
    # decided before changing anything
    assert double.requests_matching("POST", UPLOAD) == []
    assert double.requests_matching("DELETE", ".") == []

    result = run(double, out, sleeps, replace=True)

    assert result.replaced == [ARCHIVES[1]]
    assert_release_complete(double, out)


def test_without_digest_the_asset_is_downloaded_and_hashed(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    """Older GitHub Enterprise Server versions report no digest."""
    release_id = double.seed_release(TAG)
    double.seed_asset(release_id, ARCHIVES[0], (out / ARCHIVES[0]).read_bytes(), digest=None)
    # same size, other bytes: only the hash can tell
    double.seed_asset(
        release_id, ARCHIVES[2], bytes(len((out / ARCHIVES[2]).read_bytes())), digest=None
    )

    with pytest.raises(ReleaseError, match=ARCHIVES[2]) as failure:
        run(double, out, sleeps)
    assert ARCHIVES[0] not in str(failure.value)
    downloads = [
        r
        for r in double.requests
        if "octet-stream" in r.headers.get("accept", "") and r.path.startswith("/api/")
    ]
    assert len(downloads) == 2

    result = run(double, out, sleeps, replace=True)
    assert ARCHIVES[0] in result.skipped and result.replaced == [ARCHIVES[2]]


# ---------------------------------------------------------------------------
# Refusals: clear one-line errors, before any request where possible


def test_asset_over_2_gib_is_refused_before_any_request(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    big = out / "framework-torch-linux_x86_64-1.tar.xz"
    with big.open("wb") as f:
        f.truncate(2 * 1024**3 + 1)  # sparse: no disk used
    index = json.loads((out / INDEX).read_text())
    torch = json.loads(json.dumps(index["layers"]["app-demo"]))
    torch["platforms"]["linux_x86_64"]["archive_name"] = big.name
    index["layers"]["framework-torch"] = torch
    (out / INDEX).write_text(json.dumps(index))

    with pytest.raises(ReleaseError) as failure:
        run(double, out, sleeps)

    message = str(failure.value)
    assert str(big) in message and "layer framework-torch" in message and "2 GiB" in message
    assert double.requests == []
    assert not (out / SHA256SUMS_NAME).exists()


def test_name_github_would_rename_is_uploaded_under_githubs_name(
    double: GitHubDouble, tmp_path: Path
) -> None:
    odd = tmp_path / "app-x@2-linux_x86_64-1.tar.xz"
    odd.write_bytes(b"x")
    kwargs = dict(repo=REPO, tag=TAG, assets=[odd], token=TOKEN, api_url=double.api_url)
    first = upload_release(**kwargs, reporter=Reporter(io.StringIO()))  # type: ignore[arg-type]
    assert first.uploaded == ["app-x.2-linux_x86_64-1.tar.xz"]
    # the next run recognises the asset by that name and uploads nothing
    second = upload_release(**kwargs, reporter=Reporter(io.StringIO()))  # type: ignore[arg-type]
    assert second.uploaded == [] and second.skipped == ["app-x.2-linux_x86_64-1.tar.xz"]
    assert [a.name for a in double.assets_of(TAG)] == ["app-x.2-linux_x86_64-1.tar.xz"]


def test_names_colliding_after_renaming_are_refused(double: GitHubDouble, tmp_path: Path) -> None:
    one, two = tmp_path / "a" / "x@1.zip", tmp_path / "b" / "x.1.zip"
    for path in (one, two):
        path.parent.mkdir()
        path.write_bytes(b"x")
    with pytest.raises(ReleaseError, match=r"would both be release asset x\.1\.zip"):
        upload_release(
            repo=REPO,
            tag=TAG,
            assets=[one, two],
            token=TOKEN,
            api_url=double.api_url,
            reporter=Reporter(io.StringIO()),
        )
    assert double.requests == []


def test_missing_permission_is_one_clear_line(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    double.add_fault(
        Fault(
            method="POST", path=CREATE, status=403, message="Resource not accessible by integration"
        )
    )
    with pytest.raises(ReleaseError) as failure:
        run(double, out, sleeps)
    assert str(failure.value) == (
        f"GitHub refused to create release {TAG} in {REPO}: 403 Resource not accessible by "
        "integration — give the workflow `contents: write` permission (or use a token with "
        "write access to the repository)"
    )
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert sleeps.delays == []


def test_bad_token_is_reported_without_the_token(out: Path, sleeps: Sleeps) -> None:
    with (
        GitHubDouble(token="a-different-token", repo=REPO) as other,
        pytest.raises(ReleaseError) as failure,
    ):
        run(other, out, sleeps)
    message = str(failure.value)
    assert "401 Bad credentials" in message and "GITHUB_TOKEN" in message
    assert TOKEN not in message


def test_missing_token_or_repository(out: Path) -> None:
    with pytest.raises(ReleaseError, match="GITHUB_TOKEN"):
        release_directory(out, tag=TAG, reporter=Reporter(io.StringIO()), environ={})
    with pytest.raises(ReleaseError, match="GITHUB_REPOSITORY"):
        release_directory(
            out, tag=TAG, reporter=Reporter(io.StringIO()), environ={"GITHUB_TOKEN": TOKEN}
        )


# ---------------------------------------------------------------------------
# Deadline


def test_deadline_exceeded_names_what_was_retried(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    double.add_fault(Fault(method="POST", path=UPLOAD, nth=1, times=1000, status=502))

    with pytest.raises(ReleaseError) as failure:
        run(double, out, sleeps, deadline_seconds=20)

    message = str(failure.value)
    first = expected_names()[0]
    assert message.startswith(f"gave up trying to upload {first} to release {TAG} after ")
    assert "502 Server Error" in message and "deadline 20 s" in message
    assert sum(sleeps.delays) <= 20
    assert sleeps.delays == [1, 2, 4, 8]  # exponential backoff; the next (16) would pass 20 s


def _closed_port() -> int:
    """A local port with nothing listening: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("api_url", ["closed-port", "http://no-such-host.invalid"])
def test_unreachable_api_fails_after_a_few_quick_retries(
    out: Path, sleeps: Sleeps, api_url: str
) -> None:
    # A wrong GITHUB_API_URL is not worth retrying for the whole deadline.
    if api_url == "closed-port":
        api_url = f"http://127.0.0.1:{_closed_port()}/api"
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_API_URL": api_url}
    with pytest.raises(ReleaseError) as failure:
        release_directory(
            out,
            tag=TAG,
            reporter=Reporter(io.StringIO()),
            environ=env,
            sleep=sleeps,
            deadline_seconds=600,
        )
    message = str(failure.value)
    assert message.startswith(f"could not reach GitHub to open repository {REPO}: cannot connect")
    assert api_url in message and "GITHUB_API_URL" in message
    assert TOKEN not in message
    assert sleeps.delays == [1, 2, 4]


def test_rate_limit_reset_beyond_deadline_fails_at_once(
    double: GitHubDouble, out: Path, sleeps: Sleeps
) -> None:
    double.add_fault(
        Fault(kind="rate_limit", method="GET", path=r"/repos/octo-org/stacks$", reset_in=3600)
    )

    with pytest.raises(ReleaseError) as failure:
        run(double, out, sleeps, deadline_seconds=60)

    message = str(failure.value)
    assert f"open repository {REPO}" in message and "rate limit reset" in message
    assert sleeps.delays == []


# ---------------------------------------------------------------------------
# The token never shows


def test_token_never_appears_in_output_logs_or_errors(
    double: GitHubDouble,
    out: Path,
    sleeps: Sleeps,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # PyGithub (which sets its own logger to INFO), urllib3 and requests at their chattiest
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="github")
    double.add_fault(Fault(kind="drop", method="POST", path=UPLOAD))
    double.add_fault(Fault(kind="rate_limit", method="GET", path=r"/releases/tags/"))
    plain = io.StringIO()
    run(double, out, sleeps, reporter=Reporter(plain))
    with GitHubDouble(token="other", repo=REPO) as refusing, pytest.raises(ReleaseError) as failure:
        run(refusing, out, sleeps)
    gha_stream = io.StringIO()
    run(double, out, sleeps, reporter=GitHubReporter(gha_stream))

    captured = capfd.readouterr()
    for text in (plain.getvalue(), captured.out, captured.err, caplog.text, str(failure.value)):
        assert TOKEN not in text
    assert "retrying" in plain.getvalue()  # the warnings were there to leak, and did not
    assert any(r.name.startswith("github") for r in caplog.records)
    # under Actions the only place the token appears is the runner's mask command
    gha_lines = gha_stream.getvalue().splitlines()
    assert [line for line in gha_lines if TOKEN in line] == [f"::add-mask::{TOKEN}"]
