"""Reading a ``venvstacks.toml`` (the format lmstudio-ai/venvstacks defined): the TOML, its
``[tool.uv]`` settings (or a sibling ``venvstacks.uv.toml``), then each layer table.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from venvlayers.core.errors import SpecError
from venvlayers.stack import uvsettings
from venvlayers.stack.layer_tables import LayerContext, check_module_names, parse_layer, suggest
from venvlayers.stack.pathrules import name_problem, shown
from venvlayers.stack.spec import LayerKind, LayerSpec, StackSpec


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
            f"{suggest(unknown_top[0], ['runtimes', 'frameworks', 'applications', 'tool'])};"
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
            ctx = LayerContext(spec_path, kind, index, name if valid_name else None, text)
            layer = parse_layer(ctx, entry, index_names)
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
    check_module_names(spec, text)
    return spec


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


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
                f"{suggest(key, uvsettings.SETTINGS)}; see uv's settings reference"
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
