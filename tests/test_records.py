"""The deploy path's plain records (formats/records) read what the pydantic models read,
with the same values and the same first error (field and message)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from venvlayers.formats import models, records

SHA = "b" * 64

LAYER: dict[str, Any] = {
    "layer_name": "app-one",
    "install_target": "app-one",
    "requirements_hash": "sha256:00",
    "lock_version": 3,
    "locked_at": "2026-01-01T00:00:00+00:00",
    "runtime_layer": "cpython-3.12",
    "python_implementation": "cpython@3.12.1",
    "bound_to_implementation": False,
    "required_layers": ["framework-base"],
    "app_launch_module": "one",
    "app_launch_module_hash": "sha256:11",
    "app_support_modules": [{"name": "helper", "hash": "sha256:22"}],
    "archive_build": 1,
    "archive_name": "app-one-linux_x86_64-1.tar.xz",
    "target_platform": "linux_x86_64",
    "archive_size": 10,
    "archive_hashes": {"sha256": SHA},
    "venvlayers_index": {"name": "app-one-linux_x86_64-1.tar.xz.index.json", "sha256": SHA},
    "from_a_newer_tool": {"kept": "out"},
}

RECORD: dict[str, Any] = {
    "format_version": 1,
    "id": "20260101T000000Z-abcdef01",
    "source": "/out",
    "platform": "linux_x86_64",
    "deployed_at": "2026-01-01T00:00:00+00:00",
    "layers": [
        {
            "install_target": "app-one",
            "layer_name": "app-one",
            "archive_name": "app-one.tar.xz",
            "archive_sha256": SHA,
            "app_launch_module": "one",
        }
    ],
}


def manifest(**change: Any) -> dict[str, Any]:
    layer = {k: v for k, v in (LAYER | change).items() if v is not _DROP}
    return {"layers": {"runtimes": [], "applications": [layer]}}


_DROP = object()

PAIRS = [
    (models.StackManifest, records.StackManifest),
    (models.LayerMetadata, records.LayerMetadata),
    (models.DeploymentRecord, records.DeploymentRecord),
    (models.DeployedLayer, records.DeployedLayer),
    (models.ArchiveHashes, records.ArchiveHashes),
    (models.SupportModule, records.SupportModule),
    (models.LayerIndexRef, records.LayerIndexRef),
]


@pytest.mark.parametrize(("model", "record"), PAIRS)
def test_records_have_the_models_fields(model: type[BaseModel], record: type[Any]) -> None:
    fields = {f.name: f for f in dataclasses.fields(record)}
    assert list(record._KINDS) == list(model.model_fields)  # the order errors are found in
    assert set(fields) == set(model.model_fields)
    for name, info in model.model_fields.items():
        assert info.is_required() == (name in record._REQUIRED), name


MANIFESTS = [
    manifest(),
    manifest(lock_version="7"),
    manifest(lock_version=" 7 "),
    manifest(lock_version=7.0),
    manifest(lock_version=True),
    manifest(lock_version=1.5),
    manifest(lock_version="x"),
    manifest(lock_version=None),
    manifest(lock_version=[1]),
    manifest(lock_version=_DROP),
    manifest(layer_name=5),
    manifest(layer_name=None),
    manifest(runtime_layer=None),
    manifest(runtime_layer=3),
    manifest(required_layers="framework-base"),
    manifest(required_layers=[1]),
    manifest(required_layers=None),
    manifest(archive_hashes={"md5": "x"}),
    manifest(archive_hashes="x"),
    manifest(archive_hashes=None),
    manifest(bound_to_implementation="yes"),
    manifest(bound_to_implementation="Off"),
    manifest(bound_to_implementation=1),
    manifest(bound_to_implementation=2),
    manifest(app_support_modules=[{"name": "x"}]),
    manifest(app_support_modules={"name": "x"}),
    manifest(archive_size=-1),
    manifest(venvlayers_index={"name": "x"}),
    manifest(venvlayers_index=None),
    manifest(layer_name=1, install_target=2),  # two errors: the first is reported
    {"layers": []},
    {"layers": {"runtimes": {}}},
    {"layers": {"runtimes": [5]}},
    {},
    [],
    "text",
]


@pytest.mark.parametrize("document", MANIFESTS)
def test_a_manifest_reads_as_the_model_reads_it(document: Any) -> None:
    data = json.dumps(document)
    try:
        expected = models.StackManifest.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        with pytest.raises(records.RecordError) as failure:
            records.StackManifest.from_json(data)
        assert (failure.value.loc, failure.value.msg) == (tuple(first["loc"]), first["msg"])
        return
    got = records.StackManifest.from_json(data)
    assert got.dump() == expected.model_dump(
        mode="json",
        exclude_none=True,
        exclude={"layers": {"__all__": {"__all__": {"from_a_newer_tool"}}}},
    )


@pytest.mark.parametrize(
    "document",
    [
        RECORD,
        {k: v for k, v in RECORD.items() if k != "format_version"},
        {k: v for k, v in RECORD.items() if k != "id"},
        RECORD | {"layers": [{"install_target": "x"}]},
        RECORD | {"format_version": "one", "id": 5},  # the model's field order decides
    ],
)
def test_a_deploy_record_reads_and_writes_as_the_model(document: Any, tmp_path: Path) -> None:
    data = json.dumps(document)
    try:
        expected = models.DeploymentRecord.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        with pytest.raises(records.RecordError) as failure:
            records.DeploymentRecord.from_json(data)
        assert (failure.value.loc, failure.value.msg) == (tuple(first["loc"]), first["msg"])
        return
    got = records.DeploymentRecord.from_json(data)
    assert got.write(tmp_path / "ours.json")
    assert expected.write(tmp_path / "theirs.json")
    assert (tmp_path / "ours.json").read_bytes() == (tmp_path / "theirs.json").read_bytes()


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b"[" * 100_000])
def test_text_that_is_not_json_is_one_error_at_the_top(data: bytes) -> None:
    with pytest.raises(records.RecordError) as failure:
        records.StackManifest.from_json(data)
    assert failure.value.where == "(top level)" and failure.value.msg.startswith("Invalid JSON")
