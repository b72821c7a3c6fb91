"""build-stacks.yml's supply-chain inputs, read as GitHub would run them.

Job conditions and names are evaluated with the workflow runner's expression evaluator
(tests/rig/gha/expressions.py), so "which jobs run when attest is off" is answered by the
workflow's own `if:` expressions, not by string matching. The linters (actionlint, zizmor,
check-jsonschema) run over these files in test_workflows.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from rig.gha.actions import load_yaml
from rig.gha.expressions import condition, interpolate

ROOT = Path(__file__).resolve().parent.parent
BUILD_STACKS = ROOT / ".github" / "workflows" / "build-stacks.yml"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
ACTION = ROOT / "action.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
EXAMPLES = sorted((ROOT / "examples" / "workflows").glob("*.yml"))
PREFIX = "${{ inputs.artifact-prefix }}-"


@pytest.fixture(scope="module")
def jobs() -> dict[str, Any]:
    document = load_yaml(BUILD_STACKS)
    assert isinstance(document["jobs"], dict)
    return document["jobs"]


def inputs_of(path: Path) -> dict[str, Any]:
    return load_yaml(path)["on"]["workflow_call"]["inputs"]  # type: ignore[no-any-return]


def running(jobs: dict[str, Any], **given: object) -> set[str]:
    """The jobs whose `if:` holds for these inputs (every job before them succeeded)."""
    defaults = {name: spec.get("default") for name, spec in inputs_of(BUILD_STACKS).items()}
    context = {
        "inputs": {**defaults, **given},
        "needs": {
            "lock-check": {"result": "success"},
            "publish": {"result": "success"},
            "release": {"outputs": {"sboms": '[{"sbom": "a.cdx.json"}]'}},
        },
    }
    return {name for name, job in jobs.items() if condition(job.get("if"), context, "success")}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).split("@")[0] == action


# --- attestations -------------------------------------------------------------------------


def attesting_jobs(jobs: dict[str, Any]) -> set[str]:
    return {
        name
        for name, job in jobs.items()
        if any(str(s.get("uses", "")).startswith("actions/attest") for s in steps(job))
    }


def test_attest_defaults_off_and_attests_only_when_on(jobs: dict[str, Any]) -> None:
    spec = inputs_of(BUILD_STACKS)["attest"]
    assert spec["type"] == "boolean" and spec["default"] is False
    attesting = attesting_jobs(jobs)
    assert attesting == {"attest", "attest-sboms"}
    assert not attesting & running(jobs, **{"release-tag": "v1.0.0"})
    assert attesting <= running(jobs, attest=True, **{"release-tag": "v1.0.0"})
    assert not attesting & running(jobs, attest=True)  # nothing released, nothing to attest


def test_no_job_can_mint_an_id_token_unless_attesting(jobs: dict[str, Any]) -> None:
    # A declared id-token: write would make GitHub refuse callers that do not grant it,
    # attest or not; the attest jobs declare nothing and take the caller's grant.
    for name, job in jobs.items():
        assert "id-token" not in (job.get("permissions") or {}), name
        assert "attestations" not in (job.get("permissions") or {}), name
    inheriting = {name for name, job in jobs.items() if "permissions" not in job}
    assert inheriting == attesting_jobs(jobs)
    assert "permissions" not in load_yaml(BUILD_STACKS)  # else they would inherit `{}`
    for given in ({}, {"release-tag": "v1.0.0"}, {"attest": True}):
        assert not inheriting & running(jobs, **given), given


def test_callers_grant_id_token_exactly_when_they_attest() -> None:
    callers = 0
    for path in WORKFLOWS + EXAMPLES:
        for name, job in (load_yaml(path).get("jobs") or {}).items():
            if not str(job.get("uses", "")).split("@")[0].endswith("build-stacks.yml"):
                continue
            callers += 1
            attest = (job.get("with") or {}).get("attest") is True
            granted = job.get("permissions") or {}
            assert (granted.get("id-token") == "write") is attest, f"{path.name} {name}"
            assert (granted.get("attestations") == "write") is attest, f"{path.name} {name}"
    assert callers >= 3


def test_provenance_covers_every_asset_in_sha256sums(jobs: dict[str, Any]) -> None:
    release, attest = jobs["release"], jobs["attest"]
    keep = next(s for s in steps(release) if uses(s, "actions/upload-artifact"))
    assert keep["with"]["path"] == "_stack/SHA256SUMS" and "inputs.attest" in keep["if"]
    fetch = next(s for s in steps(attest) if uses(s, "actions/download-artifact"))
    assert fetch["with"]["name"] == keep["with"]["name"] == PREFIX + "checksums"
    provenance = next(s for s in steps(attest) if uses(s, "actions/attest-build-provenance"))
    assert provenance["with"] == {"subject-checksums": f"{fetch['with']['path']}/SHA256SUMS"}


def test_each_archive_sbom_is_attested_for_that_archive(jobs: dict[str, Any]) -> None:
    release, sboms = jobs["release"], jobs["attest-sboms"]
    assert release["outputs"]["sboms"] == "${{ steps.subjects.outputs.sboms }}"
    listing = next(s for s in steps(release) if s.get("id") == "subjects")
    assert "release_subjects.py _stack" in listing["run"]
    assert sboms["strategy"]["matrix"]["subject"] == "${{ fromJSON(needs.release.outputs.sboms) }}"
    attest = next(s for s in steps(sboms) if uses(s, "actions/attest"))
    assert attest["with"] == {
        "subject-name": "${{ matrix.subject.name }}",
        "subject-digest": "${{ matrix.subject.digest }}",
        "sbom-path": "_stack/${{ matrix.subject.sbom }}",
    }
    assert "needs.release.outputs.sboms != '[]'" in sboms["if"]  # an empty matrix is an error


def write_release(folder: Path, names: dict[str, bytes]) -> None:
    import hashlib

    folder.mkdir()
    lines = []
    for name, data in names.items():
        (folder / name).write_bytes(data)
        if not name.endswith(".cdx.json"):
            github_name = name.replace("@", ".")
            lines.append(f"{hashlib.sha256(data).hexdigest()}  {github_name}\n")
    (folder / "SHA256SUMS").write_text("".join(sorted(lines)))


def run_subjects(folder: Path, tmp_path: Path) -> tuple[int, str, list[dict[str, str]]]:
    output = tmp_path / "output"
    output.write_text("")
    done = subprocess.run(
        [sys.executable, str(ROOT / "entrypoint" / "release_subjects.py"), str(folder)],
        env={**os.environ, "GITHUB_OUTPUT": str(output)},
        capture_output=True,
        text=True,
        check=False,
    )
    line = output.read_text().strip()
    assert line.startswith("sboms=")
    return done.returncode, done.stdout, json.loads(line.removeprefix("sboms="))


def test_release_subjects_pair_archives_with_their_sboms(tmp_path: Path) -> None:
    import hashlib

    folder = tmp_path / "released"
    write_release(
        folder,
        {
            "app-x@2-linux_x86_64-1.tar.xz": b"app",
            "app-x@2-linux_x86_64-1.cdx.json": b"{}",
            "cpython-3.12-win_amd64-3.zip": b"runtime",
            "cpython-3.12-win_amd64-3.cdx.json": b"{}",
            "venvstacks-index.json": b"{}",
        },
    )
    code, _, found = run_subjects(folder, tmp_path)
    assert code == 0
    assert found == [
        {
            "digest": "sha256:" + hashlib.sha256(b"app").hexdigest(),
            "name": "app-x.2-linux_x86_64-1.tar.xz",  # the name GitHub gave the asset
            "sbom": "app-x@2-linux_x86_64-1.cdx.json",
        },
        {
            "digest": "sha256:" + hashlib.sha256(b"runtime").hexdigest(),
            "name": "cpython-3.12-win_amd64-3.zip",
            "sbom": "cpython-3.12-win_amd64-3.cdx.json",
        },
    ]


def test_release_subjects_refuse_an_archive_without_sbom(tmp_path: Path) -> None:
    folder = tmp_path / "released"
    write_release(folder, {"app-y-linux_x86_64-1.tar.zst": b"app"})
    code, out, found = run_subjects(folder, tmp_path)
    assert code == 1 and found == []
    assert "::error::app-y-linux_x86_64-1.tar.zst has no SBOM beside it" in out


# --- artifacts -----------------------------------------------------------------------------


def artifact_steps(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, job in (document.get("jobs") or {}).items():
        for step in steps(job):
            if uses(step, "actions/upload-artifact") or uses(step, "actions/download-artifact"):
                found.append((name, step))
    return found


def test_every_artifact_name_carries_the_prefix(jobs: dict[str, Any]) -> None:
    document = load_yaml(BUILD_STACKS)
    assert document["concurrency"]["group"].startswith(PREFIX)
    context = {"inputs": {"artifact-prefix": "stack-a"}, "strategy": {"job-index": 3}}
    uploaded, patterns = set(), []
    for _, step in artifact_steps(document):
        given = step["with"]
        name = given.get("name") or given.get("pattern")
        if name == "${{ inputs.local-wheels-artifact }}":
            continue  # the caller's own artifact (wheels an earlier job built), named by it
        assert name.startswith(PREFIX), name
        if uses(step, "actions/upload-artifact"):
            uploaded.add(interpolate(name, context))
        elif "pattern" in given:
            patterns.append(interpolate(given["pattern"], context))
    publish = next(s for s in steps(jobs["publish"]) if s.get("id") == "publish")
    # one name per job (a duplicate platform must reach merge): <prefix>-publish-<job index>
    assert publish["with"]["artifact-prefix"] == PREFIX + "publish-${{ strategy.job-index }}"
    # the action names its artifact <artifact-prefix>-<platform>
    platforms = {
        f"stack-a-publish-{i}-{p}"
        for i, p in enumerate(("linux_x86_64", "win_amd64", "macosx_arm64"))
    }
    assert uploaded == {"stack-a-status-3", "stack-a-stack", "stack-a-checksums"}
    # each download pattern takes its own kind of artifact and nothing else
    for pattern in patterns:
        matched = {n for n in uploaded | platforms if fnmatchcase(n, pattern)}
        assert matched in ({"stack-a-status-3"}, platforms), (pattern, matched)


def test_uploads_replace_on_rerun_and_keep_for_retention_days(jobs: dict[str, Any]) -> None:
    spec = inputs_of(BUILD_STACKS)["retention-days"]
    assert spec["type"] == "number" and spec["default"] == 0
    action = load_yaml(ACTION)
    uploads = [s for _, s in artifact_steps(load_yaml(BUILD_STACKS))]
    uploads = [s for s in uploads if uses(s, "actions/upload-artifact")]
    uploads += [s for s in action["runs"]["steps"] if uses(s, "actions/upload-artifact")]
    assert len(uploads) == 4
    for step in uploads:
        assert step["with"]["overwrite"] is True
        assert step["with"]["retention-days"] == "${{ inputs.retention-days }}"
    platform_upload = uploads[-1]
    assert platform_upload["with"]["compression-level"] == 0  # archives are compressed already
    assert action["inputs"]["retention-days"]["default"] == "0"
    publish = next(s for s in steps(jobs["publish"]) if s.get("id") == "publish")
    assert publish["with"]["retention-days"] == "${{ inputs.retention-days }}"


def test_the_stack_artifact_does_not_store_the_archives_again(jobs: dict[str, Any]) -> None:
    upload = next(s for s in steps(jobs["merge"]) if uses(s, "actions/upload-artifact"))
    lines = upload["with"]["path"].split()
    assert lines[0] == "_stack"
    assert {"!_stack/*.tar.xz", "!_stack/*.tar.zst", "!_stack/*.zip"} <= set(lines)
    # the release job puts the merged stack together from the platform artifacts again
    downloads = [s for s in steps(jobs["release"]) if uses(s, "actions/download-artifact")]
    assert downloads[0]["with"]["pattern"] == PREFIX + "publish-*"
    assert downloads[0]["with"]["merge-multiple"] is True
    assert downloads[1]["with"]["name"] == PREFIX + "stack"
    assert {d["with"]["path"] for d in downloads} == {"_stack"}


# --- caching, own code, release gate ------------------------------------------------------


def test_cache_input_reaches_every_building_job(jobs: dict[str, Any]) -> None:
    spec = inputs_of(BUILD_STACKS)["cache"]
    assert spec["type"] == "boolean" and spec["default"] is True
    for name in ("lock-check", "publish"):
        action = next(s for s in steps(jobs[name]) if s.get("uses") == "./_venvlayers-action")
        assert action["with"]["cache"] == "${{ inputs.cache }}", name


def test_the_workflow_checks_out_its_own_commit(jobs: dict[str, Any]) -> None:
    spec = inputs_of(BUILD_STACKS)
    assert spec["venvlayers-repository"]["default"] == spec["venvlayers-ref"]["default"] == ""
    checkouts = [
        s
        for job in jobs.values()
        for s in steps(job)
        if uses(s, "actions/checkout") and (s.get("with") or {}).get("path") == "_venvlayers-action"
    ]
    assert len(checkouts) == 4
    for step in checkouts:
        given = step["with"]
        assert (
            given["repository"] == "${{ inputs.venvlayers-repository || job.workflow_repository }}"
        )
        assert given["ref"] == "${{ inputs.venvlayers-ref || job.workflow_sha }}"
    ci = load_yaml(ROOT / ".github" / "workflows" / "ci.yml")
    assert "venvlayers-ref" not in ci["jobs"]["stacks"]["with"]


def test_release_job_runs_in_the_release_environment(jobs: dict[str, Any]) -> None:
    assert inputs_of(BUILD_STACKS)["release-environment"]["default"] == ""
    assert jobs["release"]["environment"] == "${{ inputs.release-environment }}"


# --- PR comment, Dependabot, image --------------------------------------------------------


def test_pr_comment_is_the_actions_own_input() -> None:
    """The example posts through the action (``pr-comment``), never with gh's --edit-last."""
    for path in EXAMPLES:
        assert "--edit-last" not in path.read_text(encoding="utf-8"), path.name
    docs = (ROOT / "docs" / "github-actions.md").read_text(encoding="utf-8")
    assert "<!-- venvlayers:lock-diff -->" in docs and "gh api" not in docs
    workflow = load_yaml(ROOT / "examples" / "workflows" / "pr-lock-check.yml")
    job = workflow["jobs"]["lock-diff"]
    [diff] = [s for s in steps(job) if s.get("id") == "diff"]
    assert diff["with"]["pr-comment"] == "${{ github.event.pull_request.number }}"
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert not [s for s in steps(job) if "run" in s]  # no hand-written API calls


def test_dependabot_keeps_actions_python_and_the_image_current() -> None:
    config = load_yaml(ROOT / ".github" / "dependabot.yml")
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(ecosystems) == {"github-actions", "uv", "docker"}
    assert all(u["directory"] == "/" and u["schedule"]["interval"] for u in config["updates"])


def test_release_image_is_multi_arch_with_provenance_sbom_and_digest() -> None:
    workflow = load_yaml(RELEASE)
    image = workflow["jobs"]["image"]
    push = next(s for s in steps(image) if s.get("id") == "push")
    assert uses(push, "docker/build-push-action")
    given = push["with"]
    assert set(given["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert given["push"] is True and given["sbom"] is True
    assert given["provenance"] == "mode=max"
    assert image["outputs"]["digest"] == "${{ steps.push.outputs.digest }}"
    attest = next(s for s in steps(image) if uses(s, "actions/attest-build-provenance"))
    assert attest["with"]["subject-digest"] == "${{ steps.push.outputs.digest }}"
    notes = next(s for s in steps(workflow["jobs"]["release"]) if "DIGEST" in s.get("env", {}))
    assert notes["env"]["DIGEST"] == "${{ needs.image.outputs.digest }}"
    assert '"$IMAGE@$DIGEST"' in notes["run"] and "--notes-file" in notes["run"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "gh attestation verify" in readme and "@sha256:" in readme
