"""Run a composite ``action.yml`` locally, the way the GitHub runner would (a small subset).

What it does, per step, in order:
- evaluates ``if:`` (default ``success()``), ``env:``, ``with:`` and the script's own
  ``${{ }}`` (there should be none; the lint tests forbid them in ``run:``);
- ``run:`` steps: writes the script to a file and runs ``bash --noprofile --norc -eo pipefail``
  (GitHub's bash template) with a fresh GITHUB_OUTPUT and GITHUB_STEP_SUMMARY file per step,
  then reads back GITHUB_OUTPUT, GITHUB_ENV (applied to later steps) and GITHUB_PATH
  (prepended to PATH for later steps);
- ``uses:`` steps: calls a local stand-in registered for ``owner/repo`` (the ref is ignored).
  Defaults: astral-sh/setup-uv puts this test venv's uv on PATH; actions/upload-artifact
  copies the files to ``<artifacts>/<name>/`` relative to their common parent, like the real one
  (refusing an existing name unless ``overwrite``); actions/cache/restore and actions/cache/save
  keep entries in ``<temp>/actions-cache/`` across runs (exact key, then restore-keys prefixes,
  newest first), so cache keys and what is cached can be checked end to end.
Finally the action's ``outputs.*.value`` are evaluated.

Expression subset (documented, and all the action uses):
- literals: ``'single-quoted'`` strings (``''`` escapes a quote), numbers, true/false/null;
- property paths: ``inputs.x``, ``github.action_path``, ``github.token``, ``runner.os``,
  ``steps.<id>.outputs.<name>``, ``steps.<id>.outcome``, ``env.X`` (dashes allowed in names;
  a missing property is null);
- operators ``!``, ``==``, ``!=`` (strings compare case-insensitively; mixed types compare as
  numbers, like GitHub), ``&&``, ``||`` (return an operand, like GitHub), parentheses;
- functions ``success()``, ``failure()``, ``always()``, ``cancelled()``.
Anything else raises ``ExpressionError`` rather than guessing.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML


class ExpressionError(ValueError):
    """An expression outside the supported subset (or malformed)."""


def load_yaml(path: Path) -> Any:
    """YAML 1.2 (so a workflow's ``on:`` stays a string key), plain dicts and lists."""
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


# --- expressions ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||[!().\[\]])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"cannot parse expression at {text[pos:]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _number(value: Any) -> float:
    """GitHub's coercion for comparisons between different types."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value.strip()) if value.strip() else 0.0
    except (ValueError, AttributeError):
        return math.nan


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if type(left) is type(right) and not isinstance(left, int | float):
        return bool(left == right)
    return _number(left) == _number(right)


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "")


class _Parser:
    def __init__(self, text: str, context: Mapping[str, Any], status: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.context = context
        self.status = status  # "success" or "failure": how earlier steps went

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ExpressionError("unexpected end of expression")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, found {token[1]!r}")
        self.pos += 1
        return token

    def parse(self) -> Any:
        value = self._or()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self._peek()!r}")
        return value

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._compare()
        while self._peek() == "&&":
            self._take()
            right = self._compare()
            value = right if truthy(value) else value
        return value

    def _compare(self) -> Any:
        value = self._unary()
        if self._peek() in ("==", "!="):
            op = self._take()[1]
            equal = _equal(value, self._unary())
            return equal if op == "==" else not equal
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._take(")")
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            return self._function(text)
        return self._path(self.context.get(text))

    def _function(self, name: str) -> bool:
        self._take("(")
        self._take(")")
        results = {
            "success": self.status == "success",
            "failure": self.status == "failure",
            "always": True,
            "cancelled": False,
        }
        if name not in results:
            raise ExpressionError(f"function {name}() is not supported by the harness")
        return results[name]

    def _path(self, value: Any) -> Any:
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                key = self._take()[1]
            else:
                key = str(self._primary())
                self._take("]")
            value = value.get(key) if isinstance(value, Mapping) else None
        return value


def evaluate(expression: str, context: Mapping[str, Any], status: str = "success") -> Any:
    """Value of one expression (without the ``${{ }}``)."""
    return _Parser(expression, context, status).parse()


def _as_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def interpolate(text: Any, context: Mapping[str, Any]) -> str:
    """Replace each ``${{ expr }}`` in ``text`` by its string value."""
    return _TEMPLATE.sub(lambda m: _as_string(evaluate(m.group(1), context)), _as_string(text))


def condition(text: Any, context: Mapping[str, Any], status: str) -> bool:
    """An ``if:``: ``${{ }}`` optional; without a status function it means ``success() && (...)``."""
    if text is None or text == "":
        return status == "success"
    if isinstance(text, bool):
        return text and status == "success"
    body = str(text).strip()
    whole = _TEMPLATE.fullmatch(body)
    body = whole.group(1) if whole else body
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", body):
        body = f"success() && ({body})"
    return truthy(evaluate(body, context, status))


# --- environment files ------------------------------------------------------------------------


def parse_env_file(path: Path) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` heredocs, as GITHUB_OUTPUT/GITHUB_ENV hold."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            while i < len(lines) and lines[i] != delimiter:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError(f"{path}: heredoc for {name!r} never ends with {delimiter!r}")
            i += 1
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        else:
            raise ValueError(f"{path}: malformed line {line!r}")
    return values


# --- stand-ins for `uses:` -----------------------------------------------------------------


@dataclass
class StepLog:
    id: str
    name: str
    outcome: str  # success, failure or skipped
    log: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionResult:
    outputs: dict[str, str]
    summary: str
    steps: list[StepLog]
    env: dict[str, str]
    masks: list[str]
    artifacts: Path

    @property
    def success(self) -> bool:
        return all(step.outcome != "failure" for step in self.steps)

    @property
    def log(self) -> str:
        return "".join(f"--- {step.name} ({step.outcome})\n{step.log}" for step in self.steps)


@dataclass
class UsesCall:
    """What a stand-in for a ``uses:`` step gets, and may change."""

    with_: dict[str, str]
    env: dict[str, str]
    path: list[str]
    artifacts: Path
    log: list[str]
    cache: Path | None = None
    """Where the cache stand-ins keep entries (one folder per key)."""


UsesHandler = Callable[[UsesCall], dict[str, str]]


def setup_uv(call: UsesCall) -> dict[str, str]:
    """The test venv's uv goes first on PATH (the requested version is not downloaded)."""
    uv = Path(sys.executable).parent / ("uv.exe" if os.name == "nt" else "uv")
    found = str(uv.parent) if uv.exists() else os.path.dirname(shutil.which("uv") or "")
    if not found:
        raise FileNotFoundError("setup-uv stand-in: no uv next to the test interpreter or on PATH")
    call.path.insert(0, found)
    call.log.append(f"setup-uv stand-in: using {found} (asked for {call.with_.get('version')})\n")
    return {"uv-path": str(Path(found) / uv.name)}


def upload_artifact(call: UsesCall) -> dict[str, str]:
    """Copy the listed files/folders to ``artifacts/<name>/``, relative to their common parent."""
    name = call.with_.get("name") or "artifact"
    paths = [Path(p) for p in call.with_.get("path", "").splitlines() if p.strip()]
    paths = [p if p.is_absolute() else Path(call.env["GITHUB_WORKSPACE"]) / p for p in paths]
    existing = [p for p in paths if p.exists()]
    if not existing:
        if call.with_.get("if-no-files-found", "warn") == "error":
            raise FileNotFoundError(f"upload-artifact stand-in: no files found for {name!r}")
        return {}
    files = [
        f for p in existing for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()
    ]
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    dest = call.artifacts / name
    if dest.exists():
        if call.with_.get("overwrite", "false").lower() != "true":
            raise FileExistsError(f"upload-artifact stand-in: artifact {name!r} already exists")
        shutil.rmtree(dest)
    for f in files:
        target = dest / f.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    options = {k: call.with_.get(k, "") for k in ("retention-days", "compression-level")}
    call.log.append(f"upload-artifact stand-in: {len(files)} file(s) to {dest} {options}\n")
    return {"artifact-id": "1", "artifact-url": f"file://{dest}"}


def _cache_store(call: UsesCall) -> Path:
    if call.cache is None:
        raise ValueError("cache stand-in: the runner has no cache folder")
    call.cache.mkdir(parents=True, exist_ok=True)
    return call.cache


def _cache_paths(call: UsesCall) -> list[Path]:
    return [Path(p.strip()) for p in call.with_.get("path", "").splitlines() if p.strip()]


def cache_restore(call: UsesCall) -> dict[str, str]:
    """Exact key first, then the newest entry starting with a restore-keys line."""
    store, key = _cache_store(call), call.with_["key"]
    entries = sorted(store.iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    found = store / key if (store / key).is_dir() else None
    for prefix in [p.strip() for p in call.with_.get("restore-keys", "").splitlines()]:
        found = found or next((e for e in entries if prefix and e.name.startswith(prefix)), None)
    if found is None:
        call.log.append(f"cache stand-in: no entry for {key}\n")
        return {"cache-hit": "false"}
    for index, path in enumerate(_cache_paths(call)):
        if (found / str(index)).exists():
            # a fresh runner has nothing there; the real action extracts over what is
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            shutil.copytree(found / str(index), path, symlinks=True)
    call.log.append(f"cache stand-in: restored {found.name} for {key}\n")
    return {"cache-hit": str(found.name == key).lower(), "cache-matched-key": found.name}


def cache_save(call: UsesCall) -> dict[str, str]:
    store, key = _cache_store(call), call.with_["key"]
    if (store / key).exists():
        call.log.append(f"cache stand-in: {key} exists already, not saved\n")
        return {}
    for index, path in enumerate(_cache_paths(call)):
        if path.exists():
            shutil.copytree(path, store / key / str(index), symlinks=True)
    (store / key).mkdir(exist_ok=True)
    call.log.append(f"cache stand-in: saved {key}\n")
    return {}


DEFAULT_USES: dict[str, UsesHandler] = {
    "astral-sh/setup-uv": setup_uv,
    "actions/upload-artifact": upload_artifact,
    "actions/cache/restore": cache_restore,
    "actions/cache/save": cache_save,
}


def bash() -> str:
    """Git Bash on Windows, as the runner's ``shell: bash`` (not WSL's System32\\bash.exe)."""
    git_bash = (
        Path(os.environ.get("PROGRAMFILES", r"C:\Program Files")) / "Git" / "bin" / "bash.exe"
    )
    return str(git_bash) if os.name == "nt" and git_bash.exists() else "bash"


# --- the runner ------------------------------------------------------------------------------


class ActionRunner:
    """Runs one composite action directory (holding action.yml) in a local workspace."""

    def __init__(
        self,
        action_dir: Path,
        workspace: Path,
        temp: Path,
        *,
        token: str = "ghs_harness_token_not_a_secret",
        repository: str = "owner/repo",
        env: Mapping[str, str] | None = None,
        uses: Mapping[str, UsesHandler] | None = None,
    ) -> None:
        self.action_dir = action_dir.resolve()
        self.workspace = workspace.resolve()
        self.temp = temp.resolve()
        self.token = token
        self.repository = repository
        self.extra_env = dict(env or {})
        self.uses = {**DEFAULT_USES, **(uses or {})}
        self.action = load_yaml(self.action_dir / "action.yml")
        if self.action["runs"]["using"] != "composite":
            raise ValueError("the harness runs composite actions only")

    def _inputs(self, given: Mapping[str, str], context: dict[str, Any]) -> dict[str, str]:
        declared: dict[str, Any] = self.action.get("inputs") or {}
        unknown = set(given) - set(declared)
        if unknown:
            raise ValueError(f"inputs not declared by action.yml: {sorted(unknown)}")
        values = {}
        for name, spec in declared.items():
            if name in given:
                values[name] = given[name]
            elif spec.get("required") and "default" not in spec:
                raise ValueError(f"required input {name!r} not given")
            else:
                values[name] = interpolate(spec.get("default", ""), context)
        return values

    def _base_env(self) -> dict[str, str]:
        runner_os = {"win32": "Windows", "darwin": "macOS"}.get(sys.platform, "Linux")
        machine = platform.machine().lower()
        runner_arch = "ARM64" if machine in ("arm64", "aarch64") else "X64"
        env = dict(os.environ)
        env.update(
            CI="true",
            GITHUB_ACTIONS="true",
            GITHUB_WORKSPACE=str(self.workspace),
            GITHUB_REPOSITORY=self.repository,
            GITHUB_API_URL="http://127.0.0.1:9/api/v3",
            GITHUB_SERVER_URL="http://127.0.0.1:9",
            GITHUB_ACTION_PATH=str(self.action_dir),
            RUNNER_OS=runner_os,
            RUNNER_ARCH=runner_arch,
            RUNNER_TEMP=str(self.temp),
        )
        env.update(self.extra_env)
        return env

    def run(self, inputs: Mapping[str, str]) -> ActionResult:
        self.temp.mkdir(parents=True, exist_ok=True)
        files = Path(tempfile.mkdtemp(prefix="files-", dir=self.temp))
        artifacts = files / "artifacts"
        env = self._base_env()
        added_env: dict[str, str] = {}
        path_prefix: list[str] = []
        steps_ctx: dict[str, dict[str, Any]] = {}
        context: dict[str, Any] = {
            "github": {
                "action_path": str(self.action_dir),
                "token": self.token,
                "workspace": str(self.workspace),
                "repository": self.repository,
            },
            "runner": {"os": env["RUNNER_OS"], "arch": env["RUNNER_ARCH"], "temp": str(self.temp)},
            "steps": steps_ctx,
            "env": env,
        }
        context["inputs"] = self._inputs(inputs, context)
        logs: list[StepLog] = []
        summary: list[str] = []
        status = "success"
        for index, step in enumerate(self.action["runs"]["steps"]):
            step_id = step.get("id") or f"__step{index}"
            name = step.get("name") or step.get("uses") or step_id
            context["env"] = {**env, **added_env}
            if not condition(step.get("if"), context, status):
                logs.append(StepLog(step_id, name, "skipped"))
                steps_ctx[step_id] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            step_env = {**env, **added_env}
            step_env.update(
                {k: interpolate(v, context) for k, v in (step.get("env") or {}).items()}
            )
            step_env["PATH"] = os.pathsep.join([*path_prefix, env["PATH"]])
            record = self._step(
                step, step_id, name, step_env, files, artifacts, path_prefix, context
            )
            logs.append(record)
            summary.append(record.outputs.pop("__summary__", ""))
            added_env.update(parse_env_file(files / f"{step_id}.env"))
            for line in (files / f"{step_id}.path").read_text(encoding="utf-8").splitlines():
                if line.strip():
                    path_prefix.insert(0, line.strip())
            steps_ctx[step_id] = {
                "outputs": record.outputs,
                "outcome": record.outcome,
                "conclusion": record.outcome,
            }
            if record.outcome == "failure":
                status = "failure"
        outputs = {
            name: interpolate(spec.get("value", ""), context)
            for name, spec in (self.action.get("outputs") or {}).items()
        }
        masks = sorted({m for s in logs for m in re.findall(r"^::add-mask::(.*)$", s.log, re.M)})
        return ActionResult(outputs, "".join(summary), logs, {**env, **added_env}, masks, artifacts)

    def _step(
        self,
        step: Mapping[str, Any],
        step_id: str,
        name: str,
        env: dict[str, str],
        files: Path,
        artifacts: Path,
        path_prefix: list[str],
        context: Mapping[str, Any],
    ) -> StepLog:
        output_file, summary_file = files / f"{step_id}.output", files / f"{step_id}.summary"
        env_file, path_file = files / f"{step_id}.env", files / f"{step_id}.path"
        for f in (output_file, summary_file, env_file, path_file):
            f.write_text("", encoding="utf-8")
        env.update(
            GITHUB_OUTPUT=str(output_file),
            GITHUB_STEP_SUMMARY=str(summary_file),
            GITHUB_ENV=str(env_file),
            GITHUB_PATH=str(path_file),
        )
        if "uses" in step:
            outcome, log, outputs = self._uses(step, env, artifacts, path_prefix, context)
        else:
            outcome, log = self._run(step, env, files / f"{step_id}.sh", context)
            outputs = parse_env_file(output_file)
        outputs["__summary__"] = summary_file.read_text(encoding="utf-8")
        return StepLog(step_id, name, outcome, log, outputs)

    def _run(
        self, step: Mapping[str, Any], env: dict[str, str], script: Path, context: Mapping[str, Any]
    ) -> tuple[str, str]:
        if step.get("shell") != "bash":
            raise ValueError(f"step {step.get('name')!r}: the harness runs shell: bash only")
        script.write_text(interpolate(step["run"], context), encoding="utf-8")
        cwd = self.workspace / interpolate(step.get("working-directory", "."), context)
        done = subprocess.run(
            [bash(), "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
        return ("success" if done.returncode == 0 else "failure"), done.stdout

    def _uses(
        self,
        step: Mapping[str, Any],
        env: dict[str, str],
        artifacts: Path,
        path_prefix: list[str],
        context: Mapping[str, Any],
    ) -> tuple[str, str, dict[str, str]]:
        action = str(step["uses"]).split("@", 1)[0]
        handler = self.uses.get(action)
        if handler is None:
            raise ValueError(f"no local stand-in for uses: {step['uses']}")
        with_ = {k: interpolate(v, context) for k, v in (step.get("with") or {}).items()}
        call = UsesCall(with_, env, path_prefix, artifacts, [], self.temp / "actions-cache")
        try:
            outputs = handler(call)
        except (OSError, ValueError) as exc:
            call.log.append(f"{action} stand-in failed: {exc}\n")
            return "failure", "".join(call.log), {}
        return "success", "".join(call.log), outputs
