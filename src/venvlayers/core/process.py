"""The one runner for every process venvlayers starts, uv aside (``uv.py`` runs uv).

A failed process becomes a ``VenvlayersError`` with one line: what we were doing, the exit
code and the most telling line of its output (the last non-empty stderr line, which is
Python's exception line, git's ``fatal:`` line or a tool's final complaint; stdout's last
line when stderr is empty).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from venvlayers.core.errors import ProcessError, VenvlayersError
from venvlayers.layer_scripts import postinstall


@dataclass(frozen=True)
class ProcessResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def summary(self) -> str:
        """The most relevant line of the output, chosen one way for every caller."""
        for stream in (self.stderr, self.stdout):
            lines = [line.strip() for line in stream.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return "no output"


def run_process(
    args: Sequence[str | Path],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    capture: bool = True,
    timeout: float | None = None,
    error: type[VenvlayersError] = ProcessError,
    stdin: str | None = None,
) -> ProcessResult:
    """Run ``args`` and return its result; ``what`` names the purpose for the error message.
    ``stdin``: text for its standard input (data of any size; one argument is limited to
    128 KiB on Linux).

    With ``check`` (the default) a non-zero exit raises ``error``: "{what} failed (exit N):
    {line}". A program that cannot start or a timeout raises ``error`` whatever ``check``
    says. ``capture=False`` lets the process use our stdin/stdout/stderr (running an app).
    """
    command = [str(arg) for arg in args]
    try:
        completed = subprocess.run(
            command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=capture,
            input=stdin,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise error(f"{what}: {command[0]} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise error(f"{what}: still running after {timeout:g} seconds; stopped it") from None
    except OSError as exc:
        raise error(f"{what}: {command[0]} does not start ({exc.strerror or exc})") from None
    result = ProcessResult(
        command, completed.returncode, completed.stdout or "", completed.stderr or ""
    )
    if check and not result.ok:
        raise error(f"{what} failed (exit {result.returncode}): {result.summary()}")
    return result


def run_postinstall(
    layer_path: Path,
    *,
    error: type[VenvlayersError],
    deployed_path: Path | None = None,
    compile_files: bool = True,
    base_missing_ok: bool = False,
) -> None:
    """Run a deployed layer's own ``postinstall.py`` with its base runtime, as users do.

    The base runtime (the layer's own interpreter for a runtime layer): a venv's python
    cannot start before postinstall has written its ``pyvenv.cfg``. Lower layers must be
    in place first. With ``deployed_path`` the layer sits in a staging folder (beside its
    staged lower layers) and is linked for living at ``deployed_path``: that is venvlayers'
    own ``postinstall.py`` (the layer's copy may not know the argument), still run by the
    layer's base runtime so bytecode is compiled by the interpreter that will load it.
    ``compile_files=False``: a venvlayers postinstall leaves bytecode to the caller
    (``bytecode.compile_layers``); the reference tool's compiles anyway.
    ``base_missing_ok``: a layer exported without its runtime (``local-export --include``)
    is linked by this Python instead, as venvstacks links every exported layer, and left
    uncompiled.
    """
    config = postinstall.load_config(layer_path)
    try:
        base_python = postinstall.resolve(layer_path, config["base_python"])
    except RuntimeError as exc:  # a layer config naming a path outside the deployment
        raise error(f"{exc}; the layer is damaged or unsafe, do not deploy it") from None
    if base_missing_ok and not Path(base_python).exists():
        base_python, compile_files = Path(sys.executable), False
    if deployed_path is None:
        command = [base_python, layer_path / "postinstall.py"]
    else:
        command = [base_python, Path(postinstall.__file__), layer_path, deployed_path]
    env = None if compile_files else {**os.environ, postinstall.DEFER_COMPILE: "1"}
    run_process(command, what=f"{deployed_path or layer_path}: postinstall", env=env, error=error)
