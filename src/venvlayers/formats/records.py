"""Plain records of the files a deploy reads and writes, checked without pydantic.

A deploy reads a stack manifest (``venvstacks[-<platform>].json``, whose layers are
``env_metadata`` records) and its target's ``deployment.json``, and writes the latter.
Loading pydantic costs more than an app-only update does, so the deploy path uses these
dataclasses instead of ``formats/models``. The check is explicit and gives pydantic's
messages for the same input (what ``read_model`` and ``find_manifest`` have always
printed): a missing field is ``Field required``, a wrong type ``Input should be a valid
string`` and so on, at the same ``loc``; lax conversions are pydantic's in JSON mode
(``"7"`` and ``7.0`` are the integer 7, ``"yes"`` is true). ``tests/test_records.py`` holds
both to the same corpus, and the field lists to the models'.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from venvlayers.core.errors import VenvlayersError
from venvlayers.core.fsutil import write_json_atomic

Loc = tuple[str | int, ...]
Check = Callable[[Any, Loc], Any]
R = TypeVar("R", bound="_Record")

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class RecordError(ValueError):
    """The first problem in a document: where (``loc``) and what (pydantic's words)."""

    def __init__(self, loc: Loc, msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg

    @property
    def where(self) -> str:
        return ".".join(str(p) for p in self.loc) or "(top level)"


def _str(value: Any, loc: Loc) -> str:
    if not isinstance(value, str):
        raise RecordError(loc, "Input should be a valid string")
    return value


def _int(value: Any, loc: Loc) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise RecordError(
            loc, "Input should be a valid integer, got a number with a fractional part"
        )
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise RecordError(
                loc, "Input should be a valid integer, unable to parse string as an integer"
            ) from None
    raise RecordError(loc, "Input should be a valid integer")


def _bool(value: Any, loc: Loc) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise RecordError(loc, "Input should be a valid boolean, unable to interpret input")


def _object(value: Any, loc: Loc) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(loc, "Input should be an object")
    return value


def _array(value: Any, loc: Loc) -> list[Any]:
    if not isinstance(value, list):
        raise RecordError(loc, "Input should be a valid array")
    return value


def _str_list(value: Any, loc: Loc) -> list[str]:
    return [_str(item, (*loc, n)) for n, item in enumerate(_array(value, loc))]


class _Record:
    """A dataclass read from a JSON object: ``_KINDS`` names each field's check, in the
    order pydantic's model checks them (its field order); a field without a default is
    required. Unknown fields are allowed (files from newer tools load) and dropped."""

    _KINDS: ClassVar[dict[str, Check]] = {}
    _REQUIRED: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def parse(cls: type[R], value: Any, loc: Loc = ()) -> R:
        data = _object(value, loc)
        values: dict[str, Any] = {}
        for name, check in cls._KINDS.items():
            if name not in data:
                if name in cls._REQUIRED:
                    raise RecordError((*loc, name), "Field required")
                continue
            item = data[name]
            optional = name not in cls._REQUIRED
            values[name] = None if item is None and optional else check(item, (*loc, name))
        return cls(**values)

    @classmethod
    def from_json(cls: type[R], data: bytes | str) -> R:
        try:
            document = json.loads(data)
        except json.JSONDecodeError as exc:
            raise RecordError(
                (), f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except UnicodeDecodeError:
            raise RecordError((), "Invalid JSON: the file is not UTF-8 text") from None
        except RecursionError:
            raise RecordError((), "Invalid JSON: nested too deeply") from None
        return cls.parse(document)

    def dump(self) -> dict[str, Any]:
        """The JSON object (fields that are None left out, as the models write)."""
        out: dict[str, Any] = {}
        for name in self._KINDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _kinds(cls: type[_Record], **checks: Check) -> None:
    """Give a record its field checks, in the order the model checks its fields (a dataclass
    puts fields with defaults last), and its required fields (those without a default)."""
    assert {f.name for f in fields(cls)} == set(checks), cls.__name__  # type: ignore[arg-type]
    cls._KINDS = dict(checks)
    cls._REQUIRED = frozenset(
        f.name
        for f in fields(cls)  # type: ignore[arg-type]
        if f.default is MISSING and f.default_factory is MISSING
    )


def _records(cls: type[_Record]) -> Check:
    def check(value: Any, loc: Loc) -> list[Any]:
        return [cls.parse(item, (*loc, n)) for n, item in enumerate(_array(value, loc))]

    return check


@dataclass(frozen=True)
class ArchiveHashes(_Record):
    sha256: str


@dataclass(frozen=True)
class LayerIndexRef(_Record):
    name: str
    sha256: str


@dataclass(frozen=True)
class SupportModule(_Record):
    name: str
    hash: str


@dataclass(frozen=True)
class LayerMetadata(_Record):
    """One layer of a stack manifest (``formats.models.LayerMetadata``, read by deploy)."""

    layer_name: str
    install_target: str
    requirements_hash: str
    lock_version: int
    locked_at: str
    runtime_layer: str | None = None
    python_implementation: str | None = None
    bound_to_implementation: bool | None = None
    required_layers: list[str] | None = None
    app_launch_module: str | None = None
    app_launch_module_hash: str | None = None
    app_support_modules: list[SupportModule] | None = None
    archive_build: int | None = None
    archive_name: str | None = None
    target_platform: str | None = None
    archive_size: int | None = None
    archive_hashes: ArchiveHashes | None = None
    venvlayers_index: LayerIndexRef | None = None

    @property
    def archive_sha256(self) -> str:
        """The archive's sha256 (deploy refuses metadata without one before using this)."""
        if self.archive_hashes is None:
            raise ValueError(f"{self.layer_name}: the metadata has no archive_hashes")
        return self.archive_hashes.sha256


@dataclass(frozen=True)
class StackManifest(_Record):
    """``__venvstacks__/venvstacks[-<platform>].json`` (``formats.models.StackManifest``)."""

    layers: dict[str, list[LayerMetadata]]


def _layer_lists(value: Any, loc: Loc) -> dict[str, list[LayerMetadata]]:
    return {
        key: _records(LayerMetadata)(item, (*loc, key)) for key, item in _object(value, loc).items()
    }


@dataclass(frozen=True)
class DeployedLayer(_Record):
    """One layer of a deployment: which archive was unpacked for it."""

    install_target: str
    layer_name: str
    archive_name: str
    archive_sha256: str
    app_launch_module: str | None = None


@dataclass(frozen=True)
class DeploymentRecord(_Record):
    """``<target>/.venvlayers/deployments/<id>/deployment.json``: what one deploy put in place.

    Written into the staged deployment before the switch, so the deployment the
    ``current`` link names always carries the truth about itself.
    """

    id: str
    source: str
    platform: str
    deployed_at: str
    layers: list[DeployedLayer]
    format_version: int = 1

    def write(self, path: Path) -> bool:
        """Sorted, indented JSON; True if the file changed."""
        return write_json_atomic(path, self.dump())


_kinds(ArchiveHashes, sha256=_str)
_kinds(LayerIndexRef, name=_str, sha256=_str)
_kinds(SupportModule, name=_str, hash=_str)
_kinds(
    LayerMetadata,
    layer_name=_str,
    install_target=_str,
    requirements_hash=_str,
    lock_version=_int,
    locked_at=_str,
    runtime_layer=_str,
    python_implementation=_str,
    bound_to_implementation=_bool,
    required_layers=_str_list,
    app_launch_module=_str,
    app_launch_module_hash=_str,
    app_support_modules=_records(SupportModule),
    archive_build=_int,
    archive_name=_str,
    target_platform=_str,
    archive_size=_int,
    archive_hashes=ArchiveHashes.parse,
    venvlayers_index=LayerIndexRef.parse,
)
_kinds(StackManifest, layers=_layer_lists)
_kinds(
    DeployedLayer,
    install_target=_str,
    layer_name=_str,
    archive_name=_str,
    archive_sha256=_str,
    app_launch_module=_str,
)
_kinds(
    DeploymentRecord,
    format_version=_int,
    id=_str,
    source=_str,
    platform=_str,
    deployed_at=_str,
    layers=_records(DeployedLayer),
)


def read_record(record: type[R], path: Path, error: type[VenvlayersError] = VenvlayersError) -> R:
    """``formats.models.read_model`` for a record: the same one-line errors."""
    try:
        return record.from_json(path.read_bytes())
    except FileNotFoundError:
        raise error(f"{path}: not found", path=path) from None
    except RecordError as exc:
        raise error(
            f"{path}: field '{exc.where}': {exc.msg}; regenerate this file", path=path
        ) from None
