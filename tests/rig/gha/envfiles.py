"""The runner's file commands (GITHUB_OUTPUT, GITHUB_ENV, GITHUB_STATE, GITHUB_PATH) and the
workflow commands a step prints (``::add-mask::``, ``::error::``...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


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


def read_path_file(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class Annotation:
    level: str  # error, warning, notice
    message: str
    properties: str = ""


_COMMAND = re.compile(r"^::([a-z-]+)(?: ([^:]*))?::(.*)$")


def _unescape(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


@dataclass
class Commands:
    """What a step's output asked of the runner."""

    masks: list[str]
    annotations: list[Annotation]


def read_commands(output: str) -> Commands:
    commands = Commands([], [])
    for line in output.splitlines():
        match = _COMMAND.match(line.strip())
        if not match:
            continue
        name, props, value = match.group(1), match.group(2) or "", _unescape(match.group(3))
        if name == "add-mask" and value:
            commands.masks.append(value)
        elif name in ("error", "warning", "notice"):
            commands.annotations.append(Annotation(name, value, props))
    return commands


def mask(text: str, secrets: list[str]) -> str:
    """Secrets become ``***`` in the log, longest first (as the runner does)."""
    for secret in sorted({s for s in secrets if s and s.strip()}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
