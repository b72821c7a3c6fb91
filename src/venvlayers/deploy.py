"""Deploy published layers on a target machine: verify, unpack, relink, run.

All archives are checked (size and sha256) before anything is unpacked, and every layer is
unpacked into a staging folder inside the target first, so a refused or broken archive
leaves the target exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from venvlayers import postinstall
from venvlayers.archive import extract_archive
from venvlayers.bytecode import compile_layers
from venvlayers.errors import DeployError
from venvlayers.fsutil import sha256_file, write_json_atomic
from venvlayers.gha import Reporter
from venvlayers.layout import find_metadata_sets
from venvlayers.models import LayerMetadata, StackManifest, read_model
from venvlayers.platforms import host_platform
from venvlayers.process import run_postinstall, run_process

DEPLOY_RECORD = ".venvlayers-deployed.json"


@dataclass
class DeployResult:
    target: Path
    deployed: list[str]
    unchanged: list[str]
    apps: dict[str, list[str]]
    """install target of each deployed app -> the command that runs it"""


def find_manifest(metadata: Path) -> Path:
    """This platform's manifest at ``metadata``: the manifest itself, a publish output folder
    or its ``__venvstacks__`` folder (venvstacks' layout, ``venvstacks-<platform>.json``
    before ``venvstacks.json``), or an earlier venvlayers ``__venvstacks__/<platform>``."""
    if metadata.is_file():
        return metadata
    platform = str(host_platform())
    sets = find_metadata_sets(metadata)
    for wanted in (
        lambda s: s.tagged and s.platform == platform,
        lambda s: not s.tagged and s.legacy_platform is None,
        lambda s: s.legacy_platform == platform,
    ):
        for found in sets:
            if wanted(found):
                return found.manifest
    raise DeployError(
        f"{metadata}: no venvstacks-{platform}.json or venvstacks.json here;"
        " pass a publish output folder or its __venvstacks__ folder"
    )


def _select(manifest: StackManifest, wanted: Sequence[str], source: Path) -> list[LayerMetadata]:
    ordered = [
        m
        for kind in ("runtimes", "frameworks", "applications")
        for m in manifest.layers.get(kind, [])
    ]
    by_target = {m.install_target: m for m in ordered}
    if not wanted:
        return ordered
    needed: set[str] = set()
    for name in wanted:
        matches = [
            m
            for m in ordered
            if name in (m.install_target, m.layer_name)
            or m.layer_name in (f"app-{name}", f"framework-{name}")
        ]
        if not matches:
            known = ", ".join(m.layer_name for m in ordered)
            raise DeployError(f"{source}: no layer named {name!r} (layers: {known})")
        for match in matches:
            needed.add(match.install_target)
            needed.update(match.required_layers or [])
            if match.runtime_layer:
                needed.add(match.runtime_layer)
    missing = sorted(needed - set(by_target))
    if missing:
        raise DeployError(
            f"{source}: required layers {', '.join(missing)} are not in this publish output"
        )
    return [m for m in ordered if m.install_target in needed]


def deploy_stack(
    metadata: Path, archives: Path, target: Path, layers: Sequence[str] = (), *, reporter: Reporter
) -> DeployResult:
    manifest_path = find_manifest(metadata)
    manifest = read_model(StackManifest, manifest_path, DeployError)
    selected = _select(manifest, layers, manifest_path)
    platform = str(host_platform())
    for item in selected:
        if item.target_platform and item.target_platform != platform:
            raise DeployError(
                f"{manifest_path}: {item.layer_name} was built for {item.target_platform}; this machine is {platform}"
            )
    if not selected:
        raise DeployError(
            f"{manifest_path}: lists no layers for {platform}; nothing to deploy (was the stack published for this platform?)"
        )
    # absolute and without ".." (``--target ../x``), symlinks kept: deploy where the user said
    target = Path(os.path.abspath(target))
    if target.exists() and not target.is_dir():
        raise DeployError(f"{target}: is not a folder; pass --target a folder to deploy into")
    record_path = target / DEPLOY_RECORD
    record = _read_record(record_path, reporter)

    todo: list[tuple[LayerMetadata, Path]] = []
    unchanged: list[str] = []
    for item in selected:  # verify everything before unpacking anything
        if not item.archive_name or not item.archive_hashes:
            raise DeployError(
                f"{manifest_path}: {item.layer_name} has no archive fields; deploy needs `venvlayers publish` output"
            )
        archive = archives / item.archive_name
        if not archive.exists():
            # downloaded from a GitHub release, where '@' in a name becomes '.' (imported
            # here: venvlayers.release loads the GitHub client, ~0.3 s a deploy otherwise)
            from venvlayers.release import github_asset_name

            archive = archives / github_asset_name(item.archive_name)
        if not archive.exists():
            raise DeployError(
                f"{archive}: archive of {item.layer_name} not found; pass --archives DIR where the archives are"
            )
        size = archive.stat().st_size
        if item.archive_size is not None and size != item.archive_size:
            raise DeployError(
                f"{archive}: size {size} bytes, metadata says {item.archive_size}; the download is incomplete or altered"
            )
        digest = sha256_file(archive)
        if digest != item.archive_hashes.sha256:
            raise DeployError(
                f"{archive}: sha256 {digest} does not match the metadata ({item.archive_hashes.sha256}); refusing to unpack"
            )
        if record.get(item.install_target) == digest and (target / item.install_target).is_dir():
            unchanged.append(item.install_target)
            continue
        todo.append((item, archive))

    target.mkdir(parents=True, exist_ok=True)  # only once every archive checked out
    with tempfile.TemporaryDirectory(prefix=".deploy-", dir=target) as scratch:
        staging = Path(scratch)
        for item, archive in todo:
            reporter.info(f"{item.install_target}: unpacking {archive.name}")
            extract_archive(
                archive,
                staging,
                expected_root=item.install_target,
                expected_size=item.archive_size,
                expected_sha256=item.archive_hashes.sha256 if item.archive_hashes else None,
                # venvstacks' layers link bin/python_ to ../../<runtime>/bin/python
                sibling_roots=_lower_layers(item),
            )
        for item, _ in todo:
            final = target / item.install_target
            if final.exists():
                shutil.rmtree(final)
            (staging / item.install_target).rename(final)
    for item, _archive in todo:  # lowest layers first, so upper postinstalls find them
        # each layer's own postinstall.py; ours leave bytecode to the one pass below
        run_postinstall(target / item.install_target, error=DeployError, compile_files=False)
    # the postinstall's bytecode step for every layer at once, on every core
    compile_layers([target / item.install_target for item, _ in todo])
    for item, _archive in todo:
        record[item.install_target] = item.archive_hashes.sha256 if item.archive_hashes else ""
    write_json_atomic(record_path, record)
    apps = {
        item.install_target: run_command(target, item)
        for item in selected
        if item.app_launch_module
    }
    for app, command in apps.items():
        reporter.info(f"run {app}: {' '.join(command)}")
    return DeployResult(target, [item.install_target for item, _ in todo], unchanged, apps)


def _lower_layers(item: LayerMetadata) -> set[str]:
    """The deployed folders a layer's links may lead into: its runtime and frameworks."""
    lower = set(item.required_layers or [])
    if item.runtime_layer and item.runtime_layer != item.install_target:
        lower.add(item.runtime_layer)
    return lower


def _read_record(path: Path, reporter: Reporter) -> dict[str, str]:
    """What an earlier deploy into this target unpacked (install target -> archive sha256)."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        record = None
    if not isinstance(record, dict) or not all(isinstance(v, str) for v in record.values()):
        # Only a cache of what is already in place: without it every layer is unpacked again.
        reporter.warning(f"{path}: unreadable deploy record; unpacking every layer again")
        return {}
    return record


def _python_of(layer_path: Path) -> Path:
    config = postinstall.load_config(layer_path)
    return postinstall.resolve(layer_path, config["python"])


def run_command(target: Path, item: LayerMetadata) -> list[str]:
    layer_path = target / item.install_target
    return [str(_python_of(layer_path)), "-m", str(item.app_launch_module)]


def run_app(result: DeployResult, app: str, arguments: Sequence[str]) -> int:
    matches = [
        name
        for name in result.apps
        if name == app or name in (f"app-{app}",) or name.startswith(f"app-{app}@")
    ]
    if not matches:
        raise DeployError(f"no deployed app {app!r}; apps: {', '.join(result.apps) or 'none'}")
    command = [*result.apps[matches[0]], *arguments]
    return run_process(
        command, what=f"run {app}", check=False, capture=False, error=DeployError
    ).returncode
