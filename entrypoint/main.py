"""The GitHub Action's program: map action inputs to one venvlayers command, publish results.

Used by both forms of the action:
- the composite action (action.yml) passes inputs as ``INPUT_<NAME>`` with underscores;
- the container image gets them the Docker-action way, ``INPUT_<NAME>`` uppercased with
  dashes kept (``INPUT_OUTPUT-DIR``).
Both spellings are accepted. Given command-line arguments instead (``docker run IMAGE
show venvstacks.toml``), it is simply the ``venvlayers`` command. Results become step outputs (GITHUB_OUTPUT), a markdown
report (also appended to the step summary) and annotations, through ``venvlayers.core.report``.

The commands run in this process through ``venvlayers.cli.commands.run`` (the CLI stays the one
place that parses arguments); their ``--json`` documents come back as Python objects.
Standard library plus venvlayers only: this file runs in the builder's own environment.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from venvlayers.cli.commands import Outcome
from venvlayers.cli.commands import main as cli_main
from venvlayers.cli.commands import run as run_command
from venvlayers.core import markdown as md
from venvlayers.core.errors import VenvlayersError, environment_error
from venvlayers.core.fsutil import regular_file_target, write_text_atomic
from venvlayers.core.platforms import host_platform
from venvlayers.core.report import Reporter
from venvlayers.formats.assets import layer_index_name
from venvlayers.formats.sbom import sbom_path

COMMANDS = ("lock-check", "build", "publish", "merge", "release", "lock-diff", "show")
FORMATS = ("tar.xz", "tar.zst", "zip")


def read_input(name: str, default: str = "") -> str:
    """The value of action input ``name`` (``output-dir``), stripped; ``default`` when empty."""
    upper = name.upper()
    for key in (f"INPUT_{upper}", f"INPUT_{upper.replace('-', '_')}"):
        value = os.environ.get(key, "").strip()
        if value:  # the Docker runner sets every declared input, unset ones to ""
            return value
    return default


def split_list(value: str) -> list[str]:
    """Inputs like ``include`` take patterns separated by newlines and/or spaces."""
    return value.split()


@dataclass
class Inputs:
    command: str
    spec: str
    output_dir: str
    include: list[str]
    format: str
    tag: str
    token: str
    upload_artifact: bool
    artifact_prefix: str
    base: str
    merge_inputs: list[str]
    release_name: str = ""
    prerelease: bool = False
    make_latest: str = ""
    notes_file: str = ""
    local_wheels: list[str] = field(default_factory=list)
    no_index: bool = False
    pr_comment: str = ""
    bytecode: bool = False

    @staticmethod
    def from_env() -> Inputs:
        return Inputs(
            command=read_input("command"),
            spec=read_input("spec", "venvstacks.toml"),
            output_dir=read_input("output-dir", "_publish"),
            include=split_list(read_input("include")),
            format=read_input("format"),
            tag=read_input("tag"),
            token=read_input("github-token"),
            upload_artifact=read_input("upload-artifact", "false").lower() == "true",
            artifact_prefix=read_input("artifact-prefix", "venvlayers"),
            base=read_input("base"),
            merge_inputs=split_list(read_input("merge-inputs")),
            release_name=read_input("release-name"),
            prerelease=read_input("prerelease", "false").lower() == "true",
            make_latest=read_input("make-latest"),
            notes_file=read_input("notes-file"),
            local_wheels=split_list(read_input("local-wheels")),
            no_index=read_input("no-index", "false").lower() == "true",
            pr_comment=read_input("pr-comment"),
            bytecode=read_input("bytecode", "false").lower() == "true",
        )


@dataclass
class Result:
    """What one CLI run produced: exit code, its result document, the stdout text it printed."""

    code: int
    command: str = ""  # the venvlayers subcommand that produced this result
    data: Any = None
    text: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


def _includes(inputs: Inputs, *, related: bool = True) -> list[str]:
    """The include patterns; lock-check, build and publish also take the layers above them
    and what those stand on (the action's meaning of ``include``)."""
    patterns = [arg for pattern in inputs.include for arg in ("--include", pattern)]
    return [*patterns, "--include-related"] if patterns and related else patterns


def _sources(inputs: Inputs) -> list[str]:
    """``local-wheels`` folders (relative to the workspace) and ``no-index`` for build."""
    wheels = [
        arg for folder in inputs.local_wheels for arg in ("--local-wheels", _absolute(folder))
    ]
    return [*wheels, *(["--no-index"] if inputs.no_index else [])]


def _absolute(path: str) -> str:
    """Folders are named relative to the workspace; the CLI reads them relative to the spec."""
    return os.path.abspath(path)


def _merge_dirs(patterns: list[str]) -> list[str]:
    """``merge-inputs`` entries may be globs (``artifacts/venvlayers-*``); sorted for determinism."""
    dirs: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        # a list of paths, never options: "-x" is the folder ./-x
        matches = [f"./{match}" if match.startswith("-") else match for match in matches]
        dirs.extend(match for match in matches if match not in dirs)
    if not dirs:
        raise VenvlayersError(
            f"merge-inputs {' '.join(patterns)!r} matched no folder; "
            "list the folders holding each platform's publish output"
        )
    return dirs


def cli_commands(inputs: Inputs, report: Path) -> list[list[str]]:
    """The venvlayers command lines for these inputs, run in order (``report``: markdown)."""
    spec, out = inputs.spec, inputs.output_dir
    fmt = ["--format", inputs.format] if inputs.format else []
    if inputs.command == "show":
        return [["show", *_includes(inputs, related=False), spec]]
    if inputs.command == "lock-check":
        return [["lock", "--check", *_includes(inputs), spec]]
    if inputs.command == "build":
        return [["build", "--locked", *_sources(inputs), *_includes(inputs), spec]]
    if inputs.command == "publish":
        # publish archives what build made; platform-tagged names, so platforms can merge
        publish = [
            *("publish", spec, "--output-dir", _absolute(out), "--tag-outputs"),
            *(*fmt, *(["--bytecode"] if inputs.bytecode else []), *_includes(inputs)),
        ]
        return [["build", "--locked", *_sources(inputs), *_includes(inputs), spec], publish]
    if inputs.command == "lock-diff":
        if not inputs.base:
            raise VenvlayersError(
                "input 'base' is required for lock-diff (a git ref such as origin/main)"
            )
        comment = []
        if inputs.pr_comment:
            if not inputs.pr_comment.isdigit() or not inputs.pr_comment.isascii():
                raise VenvlayersError(
                    f"input 'pr-comment' is {inputs.pr_comment[:40]!r}; give the pull request's "
                    "number (github.event.pull_request.number)"
                )
            comment = ["--pr-comment", inputs.pr_comment]
        return [["lock-diff", "--base", inputs.base, "--report", str(report), *comment, spec]]
    if inputs.command == "merge":
        dirs = _merge_dirs(inputs.merge_inputs)
        return [["merge", *dirs, "--output-dir", out, "--report", str(report)]]
    if inputs.command == "release":
        if not inputs.tag:
            raise VenvlayersError(
                "input 'tag' is required for release (for example github.ref_name)"
            )
        repo = os.environ.get("GITHUB_REPOSITORY", "")
        options = [
            *(["--repo", repo] if repo else []),
            *(["--name", inputs.release_name] if inputs.release_name else []),
            *(["--prerelease"] if inputs.prerelease else []),
            *(["--make-latest", inputs.make_latest] if inputs.make_latest else []),
            *(["--notes-file", inputs.notes_file] if inputs.notes_file else []),
        ]
        return [["release", "--tag", inputs.tag, *options, out]]
    raise VenvlayersError(
        f"input 'command' is {inputs.command!r}; use one of: {', '.join(COMMANDS)}"
    )


def prepare_environment(inputs: Inputs) -> None:
    """What the commands (and every process they start) see: no INPUT_* variables, UTF-8,
    and the token only where a command needs it."""
    for key in [key for key in os.environ if key.startswith("INPUT_")]:
        del os.environ[key]
    os.environ.update(PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    commenting = inputs.command == "lock-diff" and bool(inputs.pr_comment)
    if (inputs.command == "release" or commenting) and inputs.token:
        os.environ["GITHUB_TOKEN"] = inputs.token
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")


class _Tee(io.TextIOBase):
    """Passes writes on to ``stream`` live and keeps the lines that are not workflow commands."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.kept: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        self.kept.extend(line + "\n" for line in lines if not line.startswith("::"))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def text(self) -> str:
        tail = "" if self._partial.startswith("::") else self._partial
        return "".join(self.kept) + tail


def run_cli(args: list[str]) -> Result:
    """Run ``venvlayers ARGS`` in this process; its output goes to the log as it is written."""
    tee = _Tee(sys.stdout)
    outcome = Outcome(2)
    with contextlib.redirect_stdout(tee):
        try:
            outcome = run_command(args)
        except SystemExit as exc:  # argparse refused the arguments (it printed why)
            outcome = Outcome(exc.code if isinstance(exc.code, int) else 2)
    tee.flush()
    return Result(code=outcome.code, command=args[0], data=outcome.document, text=tee.text())


def _code_block(text: str) -> str:
    return md.fence(text) if text.strip() else ""


def describe(inputs: Inputs, result: Result, report: Path) -> str:
    """Fill ``result.outputs`` for the command and return the markdown report."""
    out, cmd = result.outputs, inputs.command
    status = "succeeded" if result.code == 0 else f"failed (exit {result.code})"
    lines = [f"### venvlayers {cmd}: {status}\n"]
    if cmd in ("lock-check", "build", "publish", "lock-diff"):
        # exit 1 means "stale locks" from the checking commands only (publish runs build first)
        stale = result.code == 1 and result.command in ("lock", "build", "lock-diff")
        out["stale"] = "true" if stale else "false"
        if stale:
            lines.append(
                "Some layer locks are stale: run `venvlayers lock` and commit the changes.\n"
            )
    if cmd == "publish" and isinstance(result.data, dict):
        archives = [str(a) for a in result.data.get("archives", [])]
        out["platform"] = str(result.data.get("platform", out.get("platform", "")))
        out["metadata-dir"] = str(result.data.get("metadata_dir", ""))
        out["archives"] = json.dumps(archives)
        lines.append(
            f"Platform {md.code(out['platform'])}, metadata in {md.code(out['metadata-dir'])}\n"
        )
        lines.append("| archive | size |\n|---|---:|\n")
        lines.extend(f"| {md.code(Path(a).name)} | {_size(a)} |\n" for a in archives)
        if inputs.upload_artifact:
            out["artifact-name"] = f"{inputs.artifact_prefix}-{out['platform']}"
            sboms = [str(sbom_path(Path(a))) for a in archives if sbom_path(Path(a)).is_file()]
            # tar archives have a layer index beside them (merge and deploy read it)
            indexes = [str(i) for a in archives if (i := _layer_index(a)).is_file()]
            out["artifact-paths"] = "\n".join([*archives, *sboms, *indexes, out["metadata-dir"]])
    if cmd == "merge":
        out["metadata-dir"] = inputs.output_dir
    if cmd == "release" and isinstance(result.data, dict):
        out["release-url"] = str(result.data.get("url", ""))
        lines.append(f"Release: {md.link(out['release-url'])}\n")
    if cmd in ("show", "lock-check", "build"):
        lines.append(_code_block(result.text))
    if cmd in ("lock-diff", "merge") and report.is_file():
        return report.read_text(encoding="utf-8")  # the CLI wrote the full report itself
    return "\n".join(lines)


def _layer_index(archive: str) -> Path:
    return Path(archive).with_name(layer_index_name(Path(archive).name))


def _size(path: str) -> str:
    try:
        return f"{Path(path).stat().st_size:,} B"
    except OSError:
        return "?"


def publish_results(reporter: Reporter, inputs: Inputs, result: Result, report: Path) -> None:
    markdown = describe(inputs, result, report)
    write_text_atomic(report, markdown)
    result.outputs["report"] = str(report)
    for name, value in sorted(result.outputs.items()):
        reporter.set_output(name, value)
    summary = os.environ.get("GITHUB_STEP_SUMMARY", "")
    # the runner's file, whatever other steps put in it (bytes that are not UTF-8 included)
    already = (
        Path(summary).read_bytes().decode("utf-8", "replace")
        if summary and Path(summary).is_file()
        else ""
    )
    if markdown.strip() not in already:  # the CLI may have added its own report already
        reporter.summary(markdown)


def report_path(inputs: Inputs) -> Path:
    base = Path(os.environ.get("RUNNER_TEMP") or inputs.output_dir)
    return (base / f"venvlayers-{inputs.command}-report.md").absolute()


def main(argv: list[str]) -> int:
    if argv:  # `docker run IMAGE publish spec.toml ...`: the plain command line
        return cli_main(argv)
    reporter = Reporter.from_env()
    try:
        return run_action(reporter)
    except VenvlayersError as exc:
        reporter.error(exc)
        return 2  # the action's own files: never 1, which means "stale locks"
    except (OSError, UnicodeError) as exc:
        # RUNNER_TEMP a file, GITHUB_OUTPUT a folder, a full disk: one line, exit 2
        reporter.error(environment_error(exc) or VenvlayersError(f"the action's own files: {exc}"))
        return 2


def check_runner_files() -> None:
    """The runner's files, before any work: outputs and the summary are regular files (or
    not there yet, in a folder that is), RUNNER_TEMP a folder. A mistake is one error."""
    for variable in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        path = Path(os.environ.get(variable) or ".")
        if path == Path("."):
            continue
        try:
            regular_file_target(path)
        except VenvlayersError as exc:
            raise VenvlayersError(f"{variable}: {exc.message}", path=path) from None
        if not path.parent.is_dir():
            raise VenvlayersError(f"{variable} ({path}): its folder does not exist", path=path)
    temp = os.environ.get("RUNNER_TEMP")
    if temp and not Path(temp).is_dir():
        raise VenvlayersError(f"RUNNER_TEMP ({temp}) is not a folder", path=temp)


def run_action(reporter: Reporter) -> int:
    """Run the command the inputs name and publish its results (outputs, report, summary)."""
    inputs = Inputs.from_env()
    reporter.mask(inputs.token)
    check_runner_files()
    report = report_path(inputs)
    try:
        if inputs.format and inputs.format not in FORMATS:
            raise VenvlayersError(
                f"input 'format' is {inputs.format!r}; use one of: {', '.join(FORMATS)}"
            )
        commands = cli_commands(inputs, report)
    except VenvlayersError as exc:
        reporter.error(exc)
        return exc.exit_code
    report.unlink(missing_ok=True)  # never mistake an older run's report for this one's
    prepare_environment(inputs)
    for args in commands:
        reporter.info(f"venvlayers {' '.join(args)}")
        result = run_cli(args)
        if result.code != 0:
            break
    result.outputs["platform"] = host_platform().value
    publish_results(reporter, inputs, result, report)
    return result.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
