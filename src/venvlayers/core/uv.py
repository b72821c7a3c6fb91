"""The only place that runs uv: which binary, which environment, and error translation
(uv's words into ours, e.g. a resolver failure naming the layers involved)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from venvlayers.core.errors import LockError, UvError
from venvlayers.core.platforms import Platform, platform_of_marker


def uv_binary() -> str:
    """The uv shipped with venvlayers (the ``uv`` dependency), else one on PATH."""
    override = os.environ.get("VENVLAYERS_UV")
    if override:
        return override
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return "uv"


def uv_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment for uv, minus anything that would leak user config in.

    uv's own variables (index credentials, UV_PYTHON_DOWNLOADS_JSON_URL mirrors, caches)
    pass through; project-shaping ones that we set ourselves do not.
    """
    env = dict(os.environ)
    for leaky in (
        "UV_CONFIG_FILE",
        "UV_PROJECT_ENVIRONMENT",
        "VIRTUAL_ENV",
        "UV_CONSTRAINT",
        "UV_OVERRIDE",
        "UV_REQUIRE_HASHES",
        "PIP_REQUIRE_VIRTUALENV",
    ):
        env.pop(leaky, None)
    env.setdefault("UV_NO_PROGRESS", "1")
    env["UV_PYTHON_PREFERENCE"] = env.get("UV_PYTHON_PREFERENCE", "managed")
    if extra:
        env.update(extra)
    return env


def run_uv(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str,
) -> subprocess.CompletedProcess[str]:
    """Run uv with ``--no-config`` (user/system config must not leak in); raise UvError on failure.

    ``what`` names the operation for the error message ("lock framework-x").
    """
    command = [uv_binary(), *args]
    # --no-config stops uv reading user/system uv.toml; project settings come from the
    # pyproject.toml we generate, so the spec's [tool.uv] is the only configuration.
    if args and args[0] in ("lock", "export", "venv", "sync"):
        command.insert(2, "--no-config")
    elif len(args) > 1 and args[0] in ("pip", "python"):
        command.insert(3, "--no-config")
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=uv_environment(env),
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise UvError(
            f"cannot {what}: uv is not installed; install it with `pip install uv`"
        ) from None
    if result.returncode != 0:
        error = UvError(f"cannot {what}: {summarize_uv_error(result.stderr)}")
        error.stderr = result.stderr
        raise error
    return result


def summarize_uv_error(stderr: str) -> str:
    """uv's error in one line: its 'error:' line plus the most telling cause/hint."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    relevant = [
        line
        for line in lines
        if line.startswith(("error:", "\u00d7", "╰─▶", "Caused by:", "cause:", "hint:"))
        or "Because" in line
        or "unsatisfiable" in line
    ]
    chosen = relevant or lines[-3:]
    text = " ".join(line.removeprefix("\u00d7").removeprefix("╰─▶").strip() for line in chosen)
    return " ".join(text.split())[:1500] or "uv failed without a message"


_NAME_RE = re.compile(r"\b([A-Za-z0-9][A-Za-z0-9._-]*)\b")


# uv: "Because linuxonly==1.0.0 has no `<marker>`-compatible wheels and ..."
_MISSING_WHEEL_RE = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) has no `([^`]+)`-compatible wheels"
)


def translate_lock_failure(
    message: str,
    *,
    spec_path: Path,
    layer: str,
    line: int | None,
    platforms: Sequence[Platform],
    pins: Iterable[tuple[str, str, str]],
) -> LockError:
    """Turn uv's resolver failure into a message that names the layers involved.

    ``pins``: (name, version, providing layer) of every version a lower layer locked.
    """
    uv_text = message.split(": ", 1)[-1]
    mentioned = {canonicalize_name(m) for m in _NAME_RE.findall(uv_text)}
    pinned = [
        f"{name} {version} (locked by {provider})"
        for name, version, provider in pins
        if canonicalize_name(name) in mentioned
    ]
    where = dict(path=spec_path, line=line)
    if (
        "no-build" in uv_text
        or "building from source is disabled" in uv_text
        or "no usable wheels" in uv_text
    ):
        return LockError(
            f"{spec_path}: layer {layer}: a requirement has no wheel (venvlayers installs wheels only); uv says: {uv_text}",
            **where,  # type: ignore[arg-type]
        )
    missing = _MISSING_WHEEL_RE.search(uv_text)
    if missing:
        package, version, marker = missing.groups()
        platform = platform_of_marker(marker)
        where_text = str(platform) if platform else f"the environment {marker}"
        return LockError(
            f"{spec_path}: layer {layer}: {package} {version} has no wheel for {where_text};"
            f" set the layer's 'platforms' to leave {where_text} out"
            " (or pin a version that has one); uv says: " + uv_text,
            **where,  # type: ignore[arg-type]
        )
    if (
        "required-environments" in uv_text
        or "doesn't have a source distribution or wheel for the current platform" in uv_text
        or "wheel for" in uv_text
    ):
        return LockError(
            f"{spec_path}: layer {layer}: no wheel for one of the target platforms ({', '.join(str(p) for p in platforms)});"
            f" narrow 'platforms' or set 'linux_target'/'macosx_target'; uv says: {uv_text}",
            **where,  # type: ignore[arg-type]
        )
    if pinned:
        return LockError(
            f"{spec_path}: layer {layer} conflicts with versions pinned by lower layers: {', '.join(pinned)};"
            f" change the requirement or relock the lower layer; uv says: {uv_text}",
            **where,  # type: ignore[arg-type]
        )
    return LockError(f"{spec_path}: cannot lock layer {layer}: {uv_text}", **where)  # type: ignore[arg-type]
