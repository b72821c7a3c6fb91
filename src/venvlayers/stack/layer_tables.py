"""One ``[[runtimes]]``, ``[[frameworks]]`` or ``[[applications]]`` table of a stack spec
read into a ``LayerSpec``: field types (pydantic), names, requirement syntax, targets,
index names, module paths. Every problem is a SpecError naming the file, layer, field and
line, and what to write instead.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
import warnings
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict, ValidationError

from venvlayers.core.errors import SpecError
from venvlayers.core.platforms import Platform
from venvlayers.stack import uvsettings
from venvlayers.stack.pathrules import module_link_problem, name_problem, shown
from venvlayers.stack.spec import LayerKind, LayerSpec, SpecWarning, StackSpec, module_name

_IMPLEMENTATION_RE = re.compile(r"^(?:cpython|pypy)@(\d+)\.(\d+)\.(\d+)$")
_LINUX_TARGET_RE = re.compile(r"^glibc(?:@(\d+)\.(\d+))?$")
_MACOSX_TARGET_RE = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.\d+)*$")


class LayerContext:
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


class _Declared(BaseModel):
    """The fields every layer may declare, with the types venvstacks reads them as."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    requirements: list[str]
    platforms: list[str] | None = None
    linux_target: str | None = None
    macosx_target: str | int | float | None = None  # venvstacks takes 13, 13.5 or "13.5"
    dynlib_exclude: list[str] = []
    package_indexes: dict[str, str] = {}
    priority_indexes: list[str] = []
    index_overrides: dict[str, str] = {}
    versioned: bool = False


class _DeclaredRuntime(_Declared):
    python_implementation: str


class _DeclaredLayered(_Declared):
    runtime: str | None = None
    frameworks: list[str] | None = None


class _DeclaredApplication(_DeclaredLayered):
    launch_module: str
    support_modules: list[str] = []


_DECLARED: dict[LayerKind, type[_Declared]] = {
    LayerKind.RUNTIME: _DeclaredRuntime,
    LayerKind.FRAMEWORK: _DeclaredLayered,
    LayerKind.APPLICATION: _DeclaredApplication,
}
_TYPE_HINTS = {
    "name": "must be a non-empty string",
    "versioned": "must be true or false",
    "package_indexes": 'must be a table of strings, like {torch = "pytorch-cpu"}',
    "index_overrides": 'must be a table of strings, like {torch = "pytorch-cpu"}',
    "runtime": "must be the name of a runtime layer",
    "launch_module": "must be a path relative to the spec's folder",
    "python_implementation": 'must look like "cpython@X.Y.Z" or "pypy@X.Y.Z"',
    "linux_target": 'must be "glibc" or "glibc@X.Y" such as "glibc@2.28"',
    "macosx_target": 'must be a macOS version like "13.0" or "14"',
}
_MISSING_HINTS = {
    "requirements": " (use requirements = [] for none)",
    "python_implementation": ' (for example "cpython@3.12.7")',
    "launch_module": " (path of the module run with python -m)",
}


def _declared(ctx: LayerContext, fields: dict[str, Any]) -> _Declared:
    """``fields`` checked against the kind's model; the first problem as a SpecError, in the
    order a reader fixes them: the name, unknown fields, missing fields, then types."""
    try:
        return _DECLARED[ctx.kind].model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors()
    rank = {"extra_forbidden": 1, "missing": 2}

    def order(error: Any) -> tuple[int, int]:
        field = str(error["loc"][0])
        first = 0 if field == "name" else rank.get(error["type"], 3)
        return first, list(fields).index(field) if field in fields else 0

    error = min(errors, key=order)
    field = str(error["loc"][0])
    if error["type"] == "missing":
        raise ctx.fail(None, f"missing required field '{field}'{_MISSING_HINTS.get(field, '')}")
    if error["type"] == "extra_forbidden":
        allowed = set(_DECLARED[ctx.kind].model_fields)
        raise ctx.fail(
            field,
            f"unknown field{suggest(field, allowed)}; allowed fields: {', '.join(sorted(allowed))}",
        )
    hint = _TYPE_HINTS.get(field, "must be an array of strings")
    raise ctx.fail(field, f"{hint} (got {shown(repr(fields.get(field)))})")


def parse_layer(ctx: LayerContext, entry: dict[str, Any], index_names: set[str]) -> LayerSpec:
    fields = _without_deprecated(ctx, dict(entry))
    declared = _declared(ctx, fields)
    _check_name(ctx, declared.name)
    for requirement in declared.requirements:
        _check_requirement(ctx, requirement)
    values: dict[str, Any] = {
        "kind": ctx.kind,
        "line": ctx.line,
        **declared.model_dump(
            include={"name", "requirements", "dynlib_exclude", "priority_indexes", "versioned"}
        ),
        "package_indexes": declared.package_indexes,
        "index_overrides": declared.index_overrides,
    }
    if declared.platforms is not None:
        values["platforms"] = tuple(_platform(ctx, value) for value in declared.platforms)
    if declared.linux_target is not None:
        values["linux_target"] = _parse_linux_target(ctx, declared.linux_target)
        values["linux_target_text"] = declared.linux_target
    if declared.macosx_target is not None:
        values["macosx_target"] = _parse_macosx_target(ctx, declared.macosx_target)
        values["macosx_target_text"] = str(declared.macosx_target)
    _check_index_names(ctx, declared, index_names)
    if isinstance(declared, _DeclaredRuntime):
        if not _IMPLEMENTATION_RE.match(declared.python_implementation):
            raise ctx.fail(
                "python_implementation",
                'must look like "cpython@X.Y.Z" or "pypy@X.Y.Z" (X.Y.Z: the Python version)'
                f" (got {declared.python_implementation!r})",
            )
        values["python_implementation"] = declared.python_implementation
    if isinstance(declared, _DeclaredLayered):
        values.update(_lower_layers(ctx, declared))
    if isinstance(declared, _DeclaredApplication):
        _check_module_path(ctx, "launch_module", declared.launch_module)
        for module in declared.support_modules:
            _check_module_path(ctx, "support_modules", module)
        values["launch_module"] = declared.launch_module
        values["support_modules"] = tuple(sorted(declared.support_modules))
    return LayerSpec(**values)


def _without_deprecated(ctx: LayerContext, fields: dict[str, Any]) -> dict[str, Any]:
    """Deprecated fields are accepted with a warning, as the reference tool does."""
    if "build_requirements" in fields:
        fields.pop("build_requirements")
        _warn(ctx, "build_requirements", "is deprecated and has no effect; remove it")
    if "fully_versioned_name" in fields:
        obsolete = fields.pop("fully_versioned_name")
        if ctx.kind is not LayerKind.RUNTIME:
            raise ctx.fail("fully_versioned_name", "is only meaningful for runtime layers")
        if "python_implementation" in fields:
            raise ctx.fail(
                "fully_versioned_name",
                "is the obsolete name of 'python_implementation'; set only 'python_implementation'",
            )
        fields["python_implementation"] = obsolete
        _warn(ctx, "fully_versioned_name", "is deprecated; rename it to 'python_implementation'")
    return fields


def _check_name(ctx: LayerContext, name: str) -> None:
    if not name.strip():
        raise ctx.fail("name", "must be a non-empty string")
    problem = name_problem(name)
    if problem:
        raise ctx.fail(
            "name",
            f"{shown(name)} {problem}; use letters, digits, '.', '_', '-' or '@'"
            ' (like "cpython-3.12" or "my-app")',
        )
    if ctx.kind is LayerKind.RUNTIME:
        for other in (LayerKind.FRAMEWORK, LayerKind.APPLICATION):
            if name.startswith(other.prefix):
                raise ctx.fail(
                    "name",
                    f"runtime names must not start with the reserved prefix '{other.prefix}'",
                )


def _platform(ctx: LayerContext, value: str) -> Platform:
    try:
        return Platform(value)
    except ValueError:
        raise ctx.fail(
            "platforms",
            f"unknown platform {value!r}{suggest(value, [p.value for p in Platform])};"
            f" choose from {', '.join(p.value for p in Platform)}",
        ) from None


def _check_index_names(ctx: LayerContext, declared: _Declared, index_names: set[str]) -> None:
    for index_name in declared.priority_indexes:
        if index_name not in index_names:
            raise ctx.fail("priority_indexes", _unknown_index(index_name, index_names))
    for package, index_name in declared.package_indexes.items():
        if index_name not in index_names:
            raise ctx.fail(
                "package_indexes", f"package '{package}': {_unknown_index(index_name, index_names)}"
            )
    for source, target in declared.index_overrides.items():
        for index_name in (source, target):
            if index_name not in index_names:
                raise ctx.fail("index_overrides", _unknown_index(index_name, index_names))


def _lower_layers(ctx: LayerContext, declared: _DeclaredLayered) -> dict[str, Any]:
    """A framework or application sits on one runtime or on frameworks, never both."""
    if declared.runtime is not None and declared.frameworks is not None:
        raise ctx.fail("runtime", "set either 'runtime' or 'frameworks', not both")
    if declared.runtime is not None:
        return {"runtime": declared.runtime}
    if declared.frameworks is None:
        raise ctx.fail(
            None,
            "set either 'runtime' (a runtime layer name) or 'frameworks' (framework layer names)",
        )
    if not declared.frameworks:
        raise ctx.fail("frameworks", "must name at least one framework layer")
    if len(set(declared.frameworks)) != len(declared.frameworks):
        raise ctx.fail("frameworks", "lists the same framework more than once")
    return {"frameworks": tuple(declared.frameworks)}


def _check_requirement(ctx: LayerContext, requirement: str) -> None:
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


def _warn(ctx: LayerContext, field: str, message: str) -> None:
    warnings.warn(
        f"{ctx.spec_path}: {ctx.where()} field '{field}' {message}", SpecWarning, stacklevel=3
    )


def _unknown_index(index_name: str, index_names: set[str]) -> str:
    known = ", ".join(sorted(index_names)) or "none"
    return (
        f"names index '{index_name}' which is not configured{suggest(index_name, index_names)};"
        f' define it with [[tool.uv.index]] name = "{index_name}" (configured: {known})'
    )


def _parse_linux_target(ctx: LayerContext, value: str) -> tuple[int, int]:
    match = _LINUX_TARGET_RE.match(value)
    if not match:
        raise ctx.fail(
            "linux_target", f'must be "glibc" or "glibc@X.Y" such as "glibc@2.28" (got {value!r})'
        )
    if match.group(1) is None:
        return (2, 28)
    return (int(match.group(1)), int(match.group(2)))


def _parse_macosx_target(ctx: LayerContext, value: str | int | float) -> tuple[int, int]:
    # venvstacks reads "X", "X.Y" or longer (extra parts ignored), as text or a number
    match = _MACOSX_TARGET_RE.match(str(value))
    if not match:
        raise ctx.fail(
            "macosx_target", f'must be a macOS version like "13.0" or "14" (got {value!r})'
        )
    return (int(match.group(1)), int(match.group(2) or 0))


def _check_module_path(ctx: LayerContext, field: str, relative: str) -> None:
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


def check_module_names(spec: StackSpec, text: str) -> None:
    for index, layer in enumerate(lay for lay in spec.layers if lay.kind is LayerKind.APPLICATION):
        if layer.launch_module is None:
            continue
        ctx = LayerContext(spec.path, LayerKind.APPLICATION, index, layer.name, text)
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


def suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
