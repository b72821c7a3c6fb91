"""Load and validate a venvstacks.toml stack spec (the format lmstudio-ai/venvstacks defined).

This module checks everything that can be checked one layer at a time: syntax, field
types, names, requirement syntax, module paths, index names. Checks that need the whole
layer graph (references, cycles, C3 order, inherited indexes) live in ``graph.py``.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict

from venvlayers.core.errors import SpecError
from venvlayers.core.platforms import Platform
from venvlayers.stack import uvsettings
from venvlayers.stack.pathrules import module_link_problem, name_problem, shown


class LayerKind(StrEnum):
    RUNTIME = "runtime"
    FRAMEWORK = "framework"
    APPLICATION = "application"

    @property
    def table(self) -> str:
        """The spec's array-of-tables key for this kind."""
        return {"runtime": "runtimes", "framework": "frameworks", "application": "applications"}[
            self.value
        ]

    @property
    def prefix(self) -> str:
        return {"runtime": "", "framework": "framework-", "application": "app-"}[self.value]


class SpecWarning(UserWarning):
    """A deprecated but still accepted spec field."""


COMMON_FIELDS = {
    "name",
    "requirements",
    "platforms",
    "linux_target",
    "macosx_target",
    "dynlib_exclude",
    "package_indexes",
    "priority_indexes",
    "index_overrides",
    "versioned",
}
KIND_FIELDS: dict[LayerKind, set[str]] = {
    LayerKind.RUNTIME: COMMON_FIELDS | {"python_implementation"},
    LayerKind.FRAMEWORK: COMMON_FIELDS | {"runtime", "frameworks"},
    LayerKind.APPLICATION: COMMON_FIELDS
    | {"runtime", "frameworks", "launch_module", "support_modules"},
}
DEPRECATED_FIELDS = {"build_requirements", "fully_versioned_name"}

_IMPLEMENTATION_RE = re.compile(r"^cpython@(\d+)\.(\d+)\.(\d+)$")
_LINUX_TARGET_RE = re.compile(r"^glibc(?:@(\d+)\.(\d+))?$")
_MACOSX_TARGET_RE = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.\d+)*$")


class LayerSpec(BaseModel):
    """One layer exactly as declared (names are the spec's, without kind prefixes)."""

    model_config = ConfigDict(frozen=True)

    kind: LayerKind
    name: str
    requirements: tuple[str, ...] = ()
    platforms: tuple[Platform, ...] | None = None
    linux_target: tuple[int, int] | None = None
    macosx_target: tuple[int, int] | None = None
    linux_target_text: str | None = None
    """The spec's own text (venvstacks hashes it into the lock metadata)."""
    macosx_target_text: str | None = None
    dynlib_exclude: tuple[str, ...] = ()
    package_indexes: dict[str, str] = {}
    priority_indexes: tuple[str, ...] = ()
    index_overrides: dict[str, str] = {}
    versioned: bool = False
    python_implementation: str | None = None
    runtime: str | None = None
    frameworks: tuple[str, ...] | None = None
    launch_module: str | None = None
    support_modules: tuple[str, ...] = ()
    line: int | None = None

    @property
    def layer_name(self) -> str:
        """The prefixed name: ``framework-x``, ``app-y``; runtimes keep their name."""
        return self.kind.prefix + self.name

    @property
    def py_version(self) -> str | None:
        """``X.Y.Z`` of a runtime layer."""
        if self.python_implementation is None:
            return None
        return self.python_implementation.partition("@")[2]


class StackSpec(BaseModel):
    """The whole spec: layers in file order (runtimes, frameworks, applications)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    layers: tuple[LayerSpec, ...]
    uv_config: dict[str, Any] = {}
    uv_config_path: Path | None = None

    @property
    def spec_dir(self) -> Path:
        return self.path.parent

    def index_names(self) -> list[str]:
        return [str(i.get("name")) for i in self.uv_config.get("index", []) if isinstance(i, dict)]


class _LayerContext:
    """Where a layer sits in the spec file, for error messages that point at it."""

    def __init__(self, spec_path: Path, kind: LayerKind, index: int, name: str | None, text: str):
        self.spec_path = spec_path
        self.kind = kind
        self.index = index
        self.name = name
        self.line = _layer_header_line(text, kind, index)
        self._text = text

    def where(self) -> str:
        label = (
            f"{self.kind.value} layer '{self.name}'"
            if self.name
            else f"{self.kind.table}[{self.index}]"
        )
        return label

    def fail(self, field: str | None, message: str) -> SpecError:
        line = self._field_line(field) if field else self.line
        field_part = f" field '{field}'" if field else ""
        return SpecError(
            f"{self.spec_path}: {self.where()}{field_part}: {message}",
            path=self.spec_path,
            line=line,
        )

    def _field_line(self, field: str) -> int | None:
        if self.line is None:
            return None
        lines = self._text.splitlines()
        pattern = re.compile(rf"^\s*{re.escape(field)}\s*=")
        for number in range(self.line, len(lines)):
            if number > self.line and lines[number].lstrip().startswith("["):
                break
            if pattern.match(lines[number]):
                return number + 1
        return self.line


def _layer_header_line(text: str, kind: LayerKind, index: int) -> int | None:
    """1-based line of the ``index``-th ``[[kind]]`` header (tomllib keeps no positions)."""
    pattern = re.compile(rf"^\s*\[\[\s*{kind.table}\s*\]\]")
    found = [n + 1 for n, line in enumerate(text.splitlines()) if pattern.match(line)]
    return found[index] if index < len(found) else None


def load_stack_spec(path: Path | str) -> StackSpec:
    """Read ``path`` and validate every layer on its own; raise SpecError on the first problem."""
    spec_path = Path(path).absolute()
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            f"{spec_path}: stack spec not found; pass the path of your venvstacks.toml"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{spec_path}: cannot read stack spec: {exc}", path=spec_path) from None
    data = _parse_toml(spec_path, text)

    unknown_top = sorted(set(data) - {"runtimes", "frameworks", "applications", "tool"})
    if unknown_top:
        raise SpecError(
            f"{spec_path}: unknown top-level key '{unknown_top[0]}'"
            f"{_suggest(unknown_top[0], ['runtimes', 'frameworks', 'applications', 'tool'])};"
            " expected [[runtimes]], [[frameworks]], [[applications]] or [tool.uv]",
            path=spec_path,
        )
    uv_config, uv_config_path = _load_uv_config(spec_path, data)
    index_names = {str(i.get("name")) for i in uv_config.get("index", []) if isinstance(i, dict)}

    layers: list[LayerSpec] = []
    folded: dict[str, str] = {}  # layer folders and archives must not collide on macOS/Windows
    for kind in LayerKind:
        entries = data.get(kind.table, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise SpecError(
                f"{spec_path}: '{kind.table}' must be an array of tables ([[{kind.table}]])",
                path=spec_path,
            )
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            name = entry.get("name")
            valid_name = isinstance(name, str) and name_problem(name) is None
            ctx = _LayerContext(spec_path, kind, index, name if valid_name else None, text)
            layer = _parse_layer(ctx, entry, index_names)
            if layer.name in seen:
                raise ctx.fail(
                    "name",
                    f"duplicate {kind.value} layer name '{layer.name}'; layer names must be unique within [[{kind.table}]]",
                )
            other = folded.setdefault(layer.layer_name.casefold(), layer.layer_name)
            if other != layer.layer_name:
                raise ctx.fail(
                    "name",
                    f"layer '{layer.layer_name}' differs from layer '{other}' only in case; their"
                    " folders and archives would collide on macOS and Windows; rename one",
                )
            seen.add(layer.name)
            layers.append(layer)
    spec = StackSpec(
        path=spec_path, layers=tuple(layers), uv_config=uv_config, uv_config_path=uv_config_path
    )
    _check_module_names(spec, text)
    return spec


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _load_uv_config(spec_path: Path, data: Mapping[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """``[tool.uv]`` in the spec wins; else a sibling ``venvstacks.uv.toml`` (as venvstacks does)."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise SpecError(f"{spec_path}: 'tool' must be a table", path=spec_path)
    inline = tool.get("uv")
    if inline is not None:
        if not isinstance(inline, dict):
            raise SpecError(f"{spec_path}: [tool.uv] must be a table", path=spec_path)
        return _check_uv_config(spec_path, inline), spec_path
    sibling = spec_path.with_name("venvstacks.uv.toml")
    if sibling.exists():
        try:
            text = sibling.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(
                f"{sibling}: not a text file (invalid UTF-8 at byte {exc.start}); "
                "it must hold uv settings as TOML",
                path=sibling,
            ) from None
        except OSError as exc:
            raise SpecError(f"{sibling}: cannot read: {exc.strerror}", path=sibling) from None
        return _check_uv_config(sibling, _parse_toml(sibling, text)), sibling
    return {}, None


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise SpecError(f"{path}: invalid TOML: {exc}", path=path, line=line) from None
    except RecursionError:
        raise SpecError(
            f"{path}: invalid TOML: arrays or tables are nested too deeply", path=path
        ) from None


def _check_uv_config(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    where = "[tool.uv]" if path.name != "venvstacks.uv.toml" else "uv settings"
    for key in config:
        if key not in uvsettings.SETTINGS:
            raise SpecError(
                f"{path}: unknown {where} setting {shown(key)}"
                f"{_suggest(key, uvsettings.SETTINGS)}; see uv's settings reference"
                " (https://docs.astral.sh/uv/reference/settings/)",
                path=path,
            )
    credentials = uvsettings.credential_problems(config)
    if credentials:
        raise SpecError(f"{path}: {credentials[0]}", path=path)
    indexes = config.get("index", [])
    if not isinstance(indexes, list) or not all(isinstance(i, dict) for i in indexes):
        raise SpecError(
            f"{path}: uv setting 'index' must be an array of tables ([[tool.uv.index]])", path=path
        )
    for position, index in enumerate(indexes):
        if "url" not in index:
            raise SpecError(f"{path}: uv index #{position + 1} has no 'url'", path=path)
        if index.get("default"):
            continue
        if "name" not in index:
            raise SpecError(
                f"{path}: uv index {index['url']!r} has no 'name'; layers refer to indexes by name",
                path=path,
            )
    return config


def _parse_layer(ctx: _LayerContext, entry: dict[str, Any], index_names: set[str]) -> LayerSpec:
    kind = ctx.kind
    fields = dict(entry)
    if "name" not in fields:
        raise ctx.fail(None, "missing required field 'name'")
    name = fields["name"]
    if not isinstance(name, str) or not name.strip():
        raise ctx.fail("name", "must be a non-empty string")
    problem = name_problem(name)
    if problem:
        raise ctx.fail(
            "name",
            f"{shown(name)} {problem}; use letters, digits, '.', '_', '-' or '@'"
            ' (like "cpython-3.12" or "my-app")',
        )
    if kind is LayerKind.RUNTIME:
        for other in (LayerKind.FRAMEWORK, LayerKind.APPLICATION):
            if name.startswith(other.prefix):
                raise ctx.fail(
                    "name",
                    f"runtime names must not start with the reserved prefix '{other.prefix}'",
                )

    # Deprecated fields: accepted with a warning, as the reference tool does
    if "build_requirements" in fields:
        fields.pop("build_requirements")
        _warn(ctx, "build_requirements", "is deprecated and has no effect; remove it")
    if "fully_versioned_name" in fields:
        legacy = fields.pop("fully_versioned_name")
        if kind is not LayerKind.RUNTIME:
            raise ctx.fail("fully_versioned_name", "is only meaningful for runtime layers")
        if "python_implementation" in fields:
            raise ctx.fail(
                "fully_versioned_name",
                "is the obsolete name of 'python_implementation'; set only 'python_implementation'",
            )
        fields["python_implementation"] = legacy
        _warn(ctx, "fully_versioned_name", "is deprecated; rename it to 'python_implementation'")

    allowed = KIND_FIELDS[kind]
    for key in fields:
        if key not in allowed:
            raise ctx.fail(
                key,
                f"unknown field{_suggest(key, allowed)}; allowed fields: {', '.join(sorted(allowed))}",
            )

    if "requirements" not in fields:
        raise ctx.fail(
            None, "missing required field 'requirements' (use requirements = [] for none)"
        )
    requirements = _string_list(ctx, fields, "requirements")
    for requirement in requirements:
        _check_requirement(ctx, requirement)

    values: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "requirements": tuple(requirements),
        "line": ctx.line,
        "dynlib_exclude": tuple(_string_list(ctx, fields, "dynlib_exclude")),
        "priority_indexes": tuple(_string_list(ctx, fields, "priority_indexes")),
        "package_indexes": _string_table(ctx, fields, "package_indexes"),
        "index_overrides": _string_table(ctx, fields, "index_overrides"),
    }
    if "platforms" in fields:
        platforms: list[Platform] = []
        for value in _string_list(ctx, fields, "platforms"):
            try:
                platforms.append(Platform(value))
            except ValueError:
                raise ctx.fail(
                    "platforms",
                    f"unknown platform {value!r}{_suggest(value, [p.value for p in Platform])};"
                    f" choose from {', '.join(p.value for p in Platform)}",
                ) from None
        values["platforms"] = tuple(platforms)
    if "versioned" in fields:
        if not isinstance(fields["versioned"], bool):
            raise ctx.fail("versioned", "must be true or false")
        values["versioned"] = fields["versioned"]
    if "linux_target" in fields:
        values["linux_target"] = _parse_linux_target(ctx, fields["linux_target"])
        values["linux_target_text"] = str(fields["linux_target"])
    if "macosx_target" in fields:
        values["macosx_target"] = _parse_macosx_target(ctx, fields["macosx_target"])
        values["macosx_target_text"] = str(fields["macosx_target"])

    for field in ("priority_indexes",):
        for index_name in values[field]:
            if index_name not in index_names:
                raise ctx.fail(field, _unknown_index(index_name, index_names))
    for package, index_name in values["package_indexes"].items():
        if index_name not in index_names:
            raise ctx.fail(
                "package_indexes", f"package '{package}': {_unknown_index(index_name, index_names)}"
            )
    for source, target in values["index_overrides"].items():
        for index_name in (source, target):
            if index_name not in index_names:
                raise ctx.fail("index_overrides", _unknown_index(index_name, index_names))

    if kind is LayerKind.RUNTIME:
        implementation = fields.get("python_implementation")
        if implementation is None:
            raise ctx.fail(
                None,
                "missing required field 'python_implementation' (for example \"cpython@3.12.7\")",
            )
        if not isinstance(implementation, str) or not _IMPLEMENTATION_RE.match(implementation):
            raise ctx.fail(
                "python_implementation", f'must look like "cpython@X.Y.Z" (got {implementation!r})'
            )
        values["python_implementation"] = implementation
    else:
        has_runtime = "runtime" in fields
        has_frameworks = "frameworks" in fields
        if has_runtime and has_frameworks:
            raise ctx.fail("runtime", "set either 'runtime' or 'frameworks', not both")
        if not has_runtime and not has_frameworks:
            raise ctx.fail(
                None,
                "set either 'runtime' (a runtime layer name) or 'frameworks' (framework layer names)",
            )
        if has_runtime:
            if not isinstance(fields["runtime"], str):
                raise ctx.fail("runtime", "must be the name of a runtime layer")
            values["runtime"] = fields["runtime"]
        else:
            frameworks = _string_list(ctx, fields, "frameworks")
            if not frameworks:
                raise ctx.fail("frameworks", "must name at least one framework layer")
            if len(set(frameworks)) != len(frameworks):
                raise ctx.fail("frameworks", "lists the same framework more than once")
            values["frameworks"] = tuple(frameworks)

    if kind is LayerKind.APPLICATION:
        if "launch_module" not in fields:
            raise ctx.fail(
                None,
                "missing required field 'launch_module' (path of the module run with python -m)",
            )
        launch = fields["launch_module"]
        if not isinstance(launch, str):
            raise ctx.fail("launch_module", "must be a path relative to the spec's folder")
        _check_module_path(ctx, "launch_module", launch)
        values["launch_module"] = launch
        support = _string_list(ctx, fields, "support_modules")
        for module in support:
            _check_module_path(ctx, "support_modules", module)
        values["support_modules"] = tuple(sorted(support))
    return LayerSpec(**values)


def _check_requirement(ctx: _LayerContext, requirement: str) -> None:
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "not PEP 508"
        raise ctx.fail(
            "requirements",
            f"invalid requirement {shown(requirement, 80)}: {reason}"
            ' (write it like "numpy>=2" or "torch==2.5.1; sys_platform == \'linux\'")',
        ) from None
    if parsed.url is None:
        return
    if "://" not in parsed.url:
        raise ctx.fail(
            "requirements",
            f"{shown(requirement, 80)}: {shown(parsed.url)} is not a URL; a direct reference"
            " needs a wheel URL such as https://host/pkg-1.0-py3-none-any.whl or file:///path.whl",
        )
    if uvsettings.has_credentials(parsed.url):
        raise ctx.fail(
            "requirements",
            f"{parsed.name} @ {uvsettings.redact(parsed.url)}: credentials in a requirement URL"
            " would be written to the lock; serve it from a named [[tool.uv.index]] and set"
            " UV_INDEX_<NAME>_USERNAME and UV_INDEX_<NAME>_PASSWORD instead",
        )


def _warn(ctx: _LayerContext, field: str, message: str) -> None:
    warnings.warn(
        f"{ctx.spec_path}: {ctx.where()} field '{field}' {message}", SpecWarning, stacklevel=3
    )


def _unknown_index(index_name: str, index_names: set[str]) -> str:
    known = ", ".join(sorted(index_names)) or "none"
    return (
        f"names index '{index_name}' which is not configured{_suggest(index_name, index_names)};"
        f' define it with [[tool.uv.index]] name = "{index_name}" (configured: {known})'
    )


def _string_list(ctx: _LayerContext, fields: Mapping[str, Any], field: str) -> list[str]:
    value = fields.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.fail(field, "must be an array of strings")
    return list(value)


def _string_table(ctx: _LayerContext, fields: Mapping[str, Any], field: str) -> dict[str, str]:
    value = fields.get(field, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ctx.fail(field, 'must be a table of strings, like {torch = "pytorch-cpu"}')
    return dict(value)


def _parse_linux_target(ctx: _LayerContext, value: Any) -> tuple[int, int]:
    match = _LINUX_TARGET_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ctx.fail(
            "linux_target", f'must be "glibc" or "glibc@X.Y" such as "glibc@2.28" (got {value!r})'
        )
    if match.group(1) is None:
        return (2, 28)
    return (int(match.group(1)), int(match.group(2)))


def _parse_macosx_target(ctx: _LayerContext, value: Any) -> tuple[int, int]:
    # venvstacks reads "X", "X.Y" or longer (extra parts ignored), as text or a number
    text = (
        str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    )
    match = _MACOSX_TARGET_RE.match(text)
    if not match:
        raise ctx.fail(
            "macosx_target", f'must be a macOS version like "13.0" or "14" (got {value!r})'
        )
    return (int(match.group(1)), int(match.group(2) or 0))


def _check_module_path(ctx: _LayerContext, field: str, relative: str) -> None:
    """Relative to the spec's folder, ``../`` included (as venvstacks resolves them)."""
    spec_dir = ctx.spec_path.parent
    quoted = shown(relative, 80)
    if any(unicodedata.category(c)[0] == "C" for c in relative):
        raise ctx.fail(field, f"{quoted} contains a control character")
    if len(relative) > 1000:
        raise ctx.fail(field, f"{quoted} is {len(relative)} characters long; use a shorter path")
    if Path(relative).is_absolute():
        raise ctx.fail(field, f"{quoted} must be relative to the spec's folder {spec_dir}")
    if PurePath(relative).name in ("", ".."):
        raise ctx.fail(field, f"{quoted} must name a .py module or a package folder")
    resolved = spec_dir / relative
    try:
        if spec_dir.resolve().is_relative_to(resolved.resolve()):
            # copying it into the layer would copy the build folder into itself
            raise ctx.fail(
                field,
                f"{quoted} names the spec's folder itself (or a folder holding it); name the"
                ' module file or package folder, like "launch/app.py"',
            )
        if not resolved.exists():
            raise ctx.fail(field, f"{quoted} does not exist (looked for {shown(str(resolved))})")
        if resolved.is_file() and resolved.suffix != ".py":
            raise ctx.fail(field, f"{quoted} is neither a .py module nor a package folder")
        if resolved.is_dir():
            link = module_link_problem(resolved)
            if link:
                raise ctx.fail(field, f"{quoted}: {link}")
    except OSError as exc:
        raise ctx.fail(field, f"{quoted} cannot be read: {exc.strerror}") from None


def module_name(relative: str) -> str:
    """Import name of a launch/support module path: ``mods/app.py`` -> ``app``."""
    path = Path(relative)
    return path.stem if path.suffix == ".py" else path.name


def _check_module_names(spec: StackSpec, text: str) -> None:
    for index, layer in enumerate(lay for lay in spec.layers if lay.kind is LayerKind.APPLICATION):
        if layer.launch_module is None:
            continue
        ctx = _LayerContext(spec.path, LayerKind.APPLICATION, index, layer.name, text)
        seen = {module_name(layer.launch_module): "launch_module"}
        for module in layer.support_modules:
            name = module_name(module)
            if name in seen:
                other = seen[name]
                raise ctx.fail(
                    "support_modules",
                    f"{module!r} has module name '{name}' which collides with {other}; rename one of them",
                )
            seen[name] = f"support module {module!r}"
