"""The smallest deployable stack: one runtime and an app printing hello (hostile-input tests)."""

from __future__ import annotations

from pathlib import Path

HELLO_SPEC = """
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@3.12.1"
requirements = []

[[applications]]
name = "hello"
launch_module = "launch/hello.py"
runtime = "cpython-3.12"
requirements = []
"""


def write_hello_stack(folder: Path, launch_source: str = "print('hello')\n") -> Path:
    """Write the spec and its launch module into ``folder``; return the spec's path."""
    (folder / "launch").mkdir(parents=True, exist_ok=True)
    (folder / "launch" / "hello.py").write_text(launch_source)
    spec = folder / "venvstacks.toml"
    spec.write_text(HELLO_SPEC)
    return spec
