"""Building: turn each layer's lock into a working environment under the build folder.

Build folders are siblings named by layer, exactly as deployed layers are siblings named
by install target, so the same ``postinstall.link_layer`` configures both.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from venvlayers import __version__
from venvlayers.build.check import EXTENSION_RE, CheckLevel, check_layer
from venvlayers.build.layout import DYNLIB_DIR, BuildFolder, LayerLayout, layer_config
from venvlayers.build.python_wrapper import install_python_wrapper
from venvlayers.build.runtime import install_runtime
from venvlayers.build.scheduler import Steps, run_pipelined
from venvlayers.core.errors import BuildError
from venvlayers.core.fsutil import sha256_file
from venvlayers.core.platforms import Platform, host_platform, uv_python_platform
from venvlayers.core.report import Reporter
from venvlayers.core.rmtree import remove_tree
from venvlayers.core.uv import run_uv
from venvlayers.formats.models import BuildStamp, LayerConfig
from venvlayers.layer_scripts import postinstall
from venvlayers.lock.hashes import git_ignored, module_hash
from venvlayers.lock.status import lock_paths, read_pylock
from venvlayers.stack.graph import Layer, StackGraph
from venvlayers.stack.layer_uv import DEFAULT_INDEX, IndexOptions, write_layer_uv_config
from venvlayers.stack.pathrules import module_link_problem
from venvlayers.stack.spec import LayerKind

SHARED_LIB_SUFFIXES = (".so", ".dylib")


@dataclass
class BuildResult:
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def build_stack(
    graph: StackGraph,
    *,
    layers: Collection[str] | None = None,
    build_dir: Path | None = None,
    clean: bool = False,
    reporter: Reporter,
    jobs: int | None = None,
    check: CheckLevel = CheckLevel.LOAD,
    index: IndexOptions = DEFAULT_INDEX,
) -> BuildResult:
    """Build ``layers`` (default: all) where they target this platform; independent layers
    in parallel. A layer whose build inputs did not change is kept (``clean``: rebuilt)."""
    platform = host_platform()
    folder = BuildFolder.of(graph, build_dir)
    result = BuildResult()
    wanted: list[Layer] = []
    for layer in graph:
        if layers is not None and layer.name not in layers:
            continue
        if not layer.targets(platform):
            result.skipped.append(layer.name)
            reporter.info(
                f"{layer.name}: not built on {platform} (targets {', '.join(map(str, layer.platforms)) or 'nothing'})"
            )
            continue
        wanted.append(layer)
    builder = _StackBuilder(
        graph, folder, platform, reporter, clean=clean, check=check, index=index
    )
    rebuilt = run_pipelined(wanted, builder.build_layer, workers=jobs)
    for layer in wanted:  # report in stack order, whatever order they finished in
        (result.built if rebuilt[layer.name] else result.unchanged).append(layer.name)
    return result


class _StackBuilder:
    def __init__(
        self,
        graph: StackGraph,
        folder: BuildFolder,
        platform: Platform,
        reporter: Reporter,
        *,
        clean: bool,
        check: CheckLevel = CheckLevel.LOAD,
        index: IndexOptions = DEFAULT_INDEX,
    ):
        self.check = check
        self.index = index
        self.graph = graph
        self.folder = folder
        self.root = folder.root
        self.platform = platform
        self.reporter = reporter
        self.clean = clean

    def layout(self, layer: Layer) -> LayerLayout:
        return LayerLayout(self.platform, layer.py_version, layer.implementation)

    def build_inputs(self, layer: Layer) -> BuildStamp:
        """Everything that, when changed, makes a rebuild necessary."""
        paths = lock_paths(self.graph, layer.name)
        if not paths.pylock.exists():
            raise BuildError(
                f"{self.graph.path}: layer {layer.name} has no lock; run `venvlayers lock`"
            )
        spec_dir = self.graph.spec.spec_dir
        modules = (
            {
                m: module_hash(spec_dir / m)
                for m in (layer.spec.launch_module, *layer.spec.support_modules)
            }
            if layer.spec.launch_module
            else None
        )
        return BuildStamp(
            tool=__version__,
            lock=sha256_file(paths.pylock),
            python=layer.python_implementation,
            dependencies=list(layer.dependencies),
            lower_locks={dep: self._lock_hash(dep) for dep in layer.dependencies},
            dynlib_exclude=list(layer.spec.dynlib_exclude),
            modules=modules,
        )

    def _lock_hash(self, name: str) -> str:
        pylock = lock_paths(self.graph, name).pylock
        return sha256_file(pylock) if pylock.exists() else ""

    def build_layer(self, layer: Layer, steps: Steps) -> bool:
        """Build ``layer`` unless its stamp says nothing changed. True if built."""
        inputs = self.build_inputs(layer)
        stamp = self.folder.build_stamp(layer.name)
        target = self.folder.layer(layer.name)
        if not self.clean and target.exists() and stamp.exists():
            try:
                if BuildStamp.model_validate_json(stamp.read_bytes()) == inputs:
                    return False
            except (OSError, ValueError):
                pass
        stamp.unlink(missing_ok=True)  # no stamp = incomplete build
        with self.reporter.group(f"build {layer.name}"):
            if target.exists() or target.is_symlink():
                remove_tree(target)
            if layer.kind is LayerKind.RUNTIME:
                self._build_runtime(layer, target)
                steps.linked()  # layers on it may start while it is checked
            else:
                self._build_layered(layer, target, steps)
            if self.check is not CheckLevel.NONE:
                self._check(layer, target)
        inputs.write(stamp)
        self.reporter.info(f"{layer.name}: built")
        return True

    # -- runtime -------------------------------------------------------------------

    def _build_runtime(self, layer: Layer, target: Path) -> None:
        install_runtime(layer.python_implementation, target, layer_name=layer.name)
        layout = self.layout(layer)
        python = target / layout.python(LayerKind.RUNTIME)
        if not python.exists():
            raise BuildError(
                f"{layer.name}: the installed runtime has no {layout.python(LayerKind.RUNTIME)}"
            )
        locked = self._install_lock(layer, python, system=True)
        # Nothing needs pip at run time; ship it only when the layer asks for it
        unwanted = [name for name in ("pip", "setuptools", "wheel") if name not in locked]
        site = target / layout.site_dir()
        present = [name for name in unwanted if any(site.glob(f"{name}-*.dist-info"))]
        if present:
            run_uv(
                ["pip", "uninstall", "--python", str(python), "--break-system-packages", *present],
                what=f"remove {', '.join(present)} from {layer.name}",
            )
        self._write_config(layer, target)

    # -- frameworks and applications ---------------------------------------------

    def _build_layered(self, layer: Layer, target: Path, steps: Steps) -> None:
        layout = self.layout(layer)
        runtime_python = self.folder.layer(layer.runtime) / layout.python(LayerKind.RUNTIME)
        run_uv(
            ["venv", "--quiet", "--python", str(runtime_python), str(target)],
            what=f"create the environment of {layer.name}",
        )
        python = target / layout.python(layer.kind)
        self._install_lock(layer, python, system=False)
        self._drop_scripts(target, layout)
        if layer.spec.launch_module:
            self._copy_modules(layer, target / layout.site_dir())
        self._link_dynlibs(layer, target, layout)
        steps.await_lower()  # what follows links to the lower layers
        self._write_config(layer, target)
        if not self.platform.is_windows:
            self._write_python_wrapper(layer, target, layout)
        steps.linked()  # layers above may link to this one while it is checked

    def _install_lock(self, layer: Layer, python: Path, *, system: bool) -> set[str]:
        pylock = lock_paths(self.graph, layer.name).pylock
        packages = {p.name for p in read_pylock(pylock)}
        if not packages:
            return packages
        args = [
            "pip",
            "install",
            "--python",
            str(python),
            "--no-build",
            # the spec's index settings, so UV_INDEX_<NAME>_* credentials reach the downloads
            "--config-file",
            str(
                write_layer_uv_config(
                    self.graph, layer, self.root / "_uv" / f"{layer.name}.toml", self.index
                )
            ),
            # wheels for the oldest glibc the layer targets, not the build machine's
            "--python-platform",
            uv_python_platform(self.platform, glibc=layer.linux_target),
            # uv's default link mode: hard links (clones on macOS) from its cache when the
            # build folder is on the cache's file system, so no package byte is copied. The
            # build never writes into an installed file in place (see _drop_scripts), so the
            # cache stays intact.
            "-r",
            str(pylock),
        ]
        if system:
            args.insert(2, "--break-system-packages")
        env = {"MACOSX_DEPLOYMENT_TARGET": "{}.{}".format(*layer.macosx_target)}
        run_uv(args, env=env, what=f"install the lock of {layer.name}")
        return packages

    def _drop_scripts(self, target: Path, layout: LayerLayout) -> None:
        """Entry-point and activation scripts hold absolute paths; layers run with python -m."""
        scripts = target / layout.scripts_dir()
        removed: set[str] = set()
        for item in scripts.iterdir():
            if item.name.lower().startswith("python"):
                continue
            if item.is_dir() and not item.is_symlink():
                remove_tree(item)
            else:
                item.unlink()
            removed.add(item.name)
        if not removed:
            return
        site = target / layout.site_dir()
        prefix = os.path.relpath(scripts, site).replace(os.sep, "/") + "/"
        for record in site.glob("*.dist-info/RECORD"):
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [
                line
                for line in lines
                if not (line.startswith(prefix) and line[len(prefix) :].split(",", 1)[0] in removed)
            ]
            if kept != lines:
                # a new file, not a write through the hard link into uv's cache
                record.unlink()
                record.write_text("".join(kept), encoding="utf-8")

    def _copy_modules(self, layer: Layer, site: Path) -> None:
        spec_dir = self.graph.spec.spec_dir
        assert layer.spec.launch_module is not None
        for relative in (layer.spec.launch_module, *layer.spec.support_modules):
            source = spec_dir / relative
            destination = site / source.name
            if source.is_file():
                shutil.copy2(source, destination)
            else:
                # checked at load time too; checked again here, where the copy happens
                problem = module_link_problem(source)
                if problem:
                    raise BuildError(
                        f"{self.graph.path}: layer {layer.name}: module {relative!r}: {problem}",
                        path=self.graph.path,
                        line=layer.spec.line,
                    )
                ignored = git_ignored(source)
                shutil.copytree(source, destination, ignore=_module_filter(source, ignored))

    def _link_dynlibs(self, layer: Layer, target: Path, layout: LayerLayout) -> None:
        dynlib = layout.dynlib_dir()
        if dynlib is None:
            return
        site = target / layout.site_dir()
        found: dict[str, Path] = {}
        for path in sorted(site.rglob("*")):
            # venvstacks' rule: every *.so and *.dylib but extension modules (which Python
            # imports); versioned names (libx.so.1) are reached through their own rpaths
            if path.suffix not in SHARED_LIB_SUFFIXES or not path.is_file() or path.is_symlink():
                continue
            if EXTENSION_RE.search(path.name):
                continue
            relative = path.relative_to(site).as_posix()
            if any(
                fnmatch.fnmatch(relative, pattern)
                or fnmatch.fnmatch(relative, "*/" + pattern.lstrip("/"))
                for pattern in layer.spec.dynlib_exclude
            ):
                continue
            if path.name in found and _same_content(found[path.name], path):
                continue  # e.g. numpy.libs and scipy.libs vendor the same libgfortran
            if path.name in found:
                other = found[path.name].relative_to(site).as_posix()
                raise BuildError(
                    f"{self.graph.path}: layer {layer.name}: two packages ship {path.name} ({other} and {relative});"
                    f' add one to dynlib_exclude, e.g. dynlib_exclude = ["{relative}"]',
                    path=self.graph.path,
                    line=layer.spec.line,
                )
            found[path.name] = path
        if not found:
            return
        folder = target / dynlib
        folder.mkdir(parents=True, exist_ok=True)
        for name, path in sorted(found.items()):
            (folder / name).symlink_to(os.path.relpath(path, folder))

    def _present_dynlibs(self) -> set[str]:
        return (
            {p.name for p in self.root.iterdir() if (p / DYNLIB_DIR).is_dir()}
            if self.root.exists()
            else set()
        )

    def _write_config(self, layer: Layer, target: Path) -> None:
        layout = self.layout(layer)
        config = layer_config(
            self.graph, layer, layout, lambda name: name, present_dynlibs=self._present_dynlibs()
        )
        config.write(target / postinstall.LAYER_CONFIG)
        shutil.copy2(Path(postinstall.__file__), target / "postinstall.py")
        if layer.kind is not LayerKind.RUNTIME and not self.platform.is_windows:
            self._relative_python_links(layer, target, layout)
        postinstall.link_layer(target, compile_files=False)

    def _relative_python_links(self, layer: Layer, target: Path, layout: LayerLayout) -> None:
        """uv links the venv's python with absolute paths; make them sibling-relative."""
        bin_dir = target / "bin"
        runtime_python = self.folder.layer(layer.runtime) / layout.python(LayerKind.RUNTIME)
        real = bin_dir / runtime_python.name
        for item in bin_dir.iterdir():
            if item.name.startswith("python") and (item.is_symlink() or item.is_file()):
                item.unlink()
        real.symlink_to(os.path.relpath(runtime_python, bin_dir))
        for alias in ("python", "python3"):
            (bin_dir / alias).symlink_to(real.name)

    def _write_python_wrapper(self, layer: Layer, target: Path, layout: LayerLayout) -> None:
        config = LayerConfig.model_validate(postinstall.load_config(target))
        install_python_wrapper(target, layout, config.dynlib_dirs)

    # -- checks ------------------------------------------------------------------

    def _check(self, layer: Layer, target: Path) -> None:
        layout = self.layout(layer)
        check_layer(
            self.graph,
            layer,
            python=target / layout.python(layer.kind),
            site=target / layout.site_dir(),
            reporter=self.reporter,
            level=self.check,
        )


def _same_content(first: Path, second: Path) -> bool:
    return first.stat().st_size == second.stat().st_size and sha256_file(first) == sha256_file(
        second
    )


def _module_filter(source: Path, ignored: set[Path]) -> Callable[[str, list[str]], set[str]]:
    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            if (
                name == "__pycache__"
                or name.startswith(".git")
                or (Path(folder) / name).resolve() in ignored
            ):
                skipped.add(name)
        return skipped

    return ignore
