"""The build folder and a layer's layout in it: where each layer, stamp and file lives.

Build folders are siblings named by layer, exactly as deployed layers are siblings named
by install target, so the same ``postinstall.link_layer`` configures both; ``layer_config``
writes venvstacks' ``venvstacks_layer.json`` for either, given how layers map to folders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from venvlayers.core.platforms import Platform
from venvlayers.formats.models import LayerConfig
from venvlayers.stack.graph import Layer, StackGraph
from venvlayers.stack.spec import LayerKind, module_name

STAMP_DIR = "_stamps"
DYNLIB_DIR = "share/venv/dynlib"


@dataclass(frozen=True)
class BuildFolder:
    """``<spec dir>/_build`` (or ``--build-dir``): one folder per layer, ``_stamps/`` beside."""

    root: Path

    @classmethod
    def of(cls, graph: StackGraph, build_dir: Path | None) -> BuildFolder:
        return cls((build_dir or graph.spec.spec_dir / "_build").absolute())

    def layer(self, name: str) -> Path:
        return self.root / name

    def build_stamp(self, name: str) -> Path:
        """What the layer was built from (its absence means an incomplete build)."""
        return self.root / STAMP_DIR / f"{name}.json"

    def publish_stamp(self, name: str, output_key: str) -> Path:
        """What the layer's archive in one output folder was made from."""
        return self.root / STAMP_DIR / f"{name}.publish-{output_key}.json"

    @property
    def stage(self) -> Path:
        """Where publish stages deployed views of built layers."""
        return self.root / "_stage"


@dataclass(frozen=True)
class LayerLayout:
    """Where things live inside a layer on a given platform."""

    platform: Platform
    py_version: str
    implementation: str = "CPython"

    @property
    def _xy(self) -> str:
        return ".".join(self.py_version.split(".")[:2])

    def python(self, kind: LayerKind) -> str:
        if self.platform.is_windows:
            return "python.exe" if kind is LayerKind.RUNTIME else "Scripts/python.exe"
        return f"bin/python{self._xy}" if kind is LayerKind.RUNTIME else "bin/python"

    def site_dir(self) -> str:
        if self.platform.is_windows:
            return "Lib/site-packages"
        # PyPy's runtime and venvs keep the standard library under lib/pypy3.Y
        lib = "pypy" if self.implementation == "PyPy" else "python"
        return f"lib/{lib}{self._xy}/site-packages"

    def dynlib_dir(self) -> str | None:
        # Windows DLLs are found through os.add_dll_directory in sitecustomize instead
        return None if self.platform.is_windows else DYNLIB_DIR

    def scripts_dir(self) -> str:
        return "Scripts" if self.platform.is_windows else "bin"


def layer_config(
    graph: StackGraph,
    layer: Layer,
    layout: LayerLayout,
    folder: Callable[[str], str],
    *,
    present_dynlibs: set[str] | None = None,
) -> LayerConfig:
    """The venvstacks ``venvstacks_layer.json`` for ``layer``; ``folder`` maps layer names to
    sibling folder names (build: layer name; deployed: install target)."""
    python = layout.python(layer.kind)
    runtime = graph[layer.runtime]
    base_python = (
        python
        if layer.kind is LayerKind.RUNTIME
        else f"../{folder(runtime.name)}/{layout.python(LayerKind.RUNTIME)}"
    )
    pylib_dirs = [f"../{folder(dep)}/{layout.site_dir()}" for dep in layer.dependencies]
    dynlib_dirs: list[str] = []
    dynlib = layout.dynlib_dir()
    if dynlib is not None:
        dynlib_dirs = [
            f"../{folder(dep)}/{dynlib}"
            for dep in layer.dependencies
            if present_dynlibs is None or dep in present_dynlibs
        ]
    return LayerConfig(
        python=python,
        py_version=layer.py_version,
        base_python=base_python,
        site_dir=layout.site_dir(),
        pylib_dirs=pylib_dirs,
        dynlib_dirs=dynlib_dirs,
        launch_module=module_name(layer.spec.launch_module) if layer.spec.launch_module else None,
    )
