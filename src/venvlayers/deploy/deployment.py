"""Deploy published layers on a target machine as one transaction, with rollback.

Layout of a target (the active layers are always at ``TARGET/<install_target>``, as
venvstacks' deployments expect)::

    TARGET/<install_target>  -> .venvlayers/current/<install_target>
    TARGET/.venvlayers/current  -> deployments/<id>     (one link: the atomic switch)
    TARGET/.venvlayers/previous -> deployments/<id>     (what --rollback restores)
    TARGET/.venvlayers/deployments/<id>/<install_target>/ + deployment.json
    TARGET/.venvlayers/deployments/<id>/<install_target> -> ../<other id>/<install_target>

A deploy checks the manifest, fetches and verifies (size, sha256) every archive it needs
before touching the target, then, holding the target's lock (a second deploy waits),
builds the new deployment in a staging folder (``stage``: unchanged layers linked
to the deployment holding them, changed ones unpacked reusing identical files). Only
then is ``current`` switched, in one rename; deployments that neither ``current`` nor
``previous`` reach through their links are removed. Any failure before that leaves the target
as it was; the record inside each deployment is written before it can become current, so
it always tells the truth.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from venvlayers.archive.read import KnownCopy
from venvlayers.core.errors import DeployError, VenvlayersError
from venvlayers.core.fsutil import sha256_file
from venvlayers.core.platforms import host_platform
from venvlayers.core.process import run_process
from venvlayers.core.report import Reporter
from venvlayers.core.rmtree import remove_tree_quietly
from venvlayers.core.runlock import run_lock_file
from venvlayers.deploy.sources import ArchiveSource, Source, find_manifest, select_layers
from venvlayers.deploy.stage import StagePlan, home_link, stage_layers
from venvlayers.formats.records import (
    DeployedLayer,
    DeploymentRecord,
    LayerMetadata,
    read_record,
)
from venvlayers.layer_scripts import postinstall
from venvlayers.net.downloads import (
    UNUSED_ARCHIVE_DAYS,
    Download,
    Downloader,
    prune_unused_archives,
)

if TYPE_CHECKING:  # deploy/delta loads only when a layer is updated from ranges
    from venvlayers.deploy.delta import DeltaPlan

STATE_DIR = ".venvlayers"
DEPLOYMENTS = "deployments"
CURRENT = "current"
PREVIOUS = "previous"
RECORD_NAME = "deployment.json"
LOCK_NAME = "lock"
_STAGING_PREFIX = ".staging-"


@dataclass
class DeployResult:
    target: Path
    deployed: list[str]
    """Layers unpacked by this run."""
    unchanged: list[str]
    apps: dict[str, list[str]]
    """install target of each deployed app -> the command that runs it"""
    deployment: str | None = None
    downloaded: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0

    def summary(self) -> str:
        text = f"deployed {len(self.deployed)} layer(s) to {self.target}"
        if self.unchanged:
            text += f"; already current: {', '.join(self.unchanged)}"
        if self.downloaded:
            text += f"; downloaded {len(self.downloaded)} archive(s), {self.bytes_downloaded} bytes"
        elif self.bytes_downloaded:  # only ranges of changed layers
            text += f"; downloaded {self.bytes_downloaded} bytes (changed ranges)"
        return text


def deploy_stack(
    source: Source,
    target: Path,
    layers: Sequence[str] = (),
    *,
    downloader: Downloader,
    reporter: Reporter,
    compile_bytecode: bool = True,
) -> DeployResult:
    """Deploy ``layers`` (default: all) of this platform from ``source`` into ``target``.

    ``compile_bytecode=False``: leave the unpacked layers' bytecode to Python (written at
    first import where the deployment is writable)."""
    platform = str(host_platform())
    manifest, where = find_manifest(source, platform)
    selected = select_layers(manifest, layers, where, platform)
    # absolute and without ".." (`--target ../x`), symlinks kept: deploy where the user said
    target = Path(os.path.abspath(target))
    _check_target(target)

    current = read_current(target, reporter)
    todo = [item for item in selected if not _reusable(item, current, target)]
    # everything checked before the target changes
    verified: dict[str, KnownCopy] = {}
    archives, deltas = _fetch(source, todo, downloader, _current_dir(target), reporter, verified)
    try:
        result = _deploy_locked(
            source,
            target,
            selected,
            platform,
            (archives, verified),
            deltas,
            downloader,
            reporter,
            compile_bytecode,
        )
    finally:
        for delta in deltas.values():  # fetched ranges are of no use to another run
            delta.discard()
    counters = downloader.counters
    if counters.fetched or counters.cached or counters.bytes_downloaded:  # a remote source
        _prune_cache(downloader.cache, {i.archive_sha256 for i in selected}, reporter)
    result.apps = _app_commands(
        target, [(i.install_target, i.app_launch_module) for i in selected], reporter
    )
    for app, command in result.apps.items():
        reporter.info(f"run {app}: {' '.join(command)}")
    return result


def _deploy_locked(
    source: Source,
    target: Path,
    selected: list[LayerMetadata],
    platform: str,
    local: tuple[dict[str, Path], dict[str, KnownCopy]],
    deltas: dict[str, DeltaPlan],
    downloader: Downloader,
    reporter: Reporter,
    compile_bytecode: bool,
) -> DeployResult:
    """The deploy under the target's lock: what changed meanwhile is fetched too (into
    ``archives`` and ``deltas``), then staged and switched to."""
    archives, verified = local
    with target_lock(target, reporter):
        clean_debris(target, reporter)
        current = read_current(target, reporter)
        todo = [item for item in selected if not _reusable(item, current, target)]
        more = [i for i in todo if i.archive_sha256 not in archives | deltas]
        fetched, new_deltas = _fetch(
            source, more, downloader, _current_dir(target), reporter, verified
        )
        archives.update(fetched)
        deltas.update(new_deltas)
        unchanged = [i.install_target for i in selected if i not in todo]
        result = DeployResult(target, [i.install_target for i in todo], unchanged, {})
        result.downloaded = list(downloader.counters.fetched)
        result.bytes_downloaded = downloader.counters.bytes_downloaded
        same_set = current is not None and {layer.install_target for layer in current.layers} == {
            i.install_target for i in selected
        }
        if todo or not same_set:
            _check_entries(target, selected)
            plan = StagePlan(
                selected,
                todo,
                archives,
                _current_dir(target),
                target,
                compile_bytecode,
                deltas,
                verified,
            )
            record = _stage_and_switch(source, target, plan, platform, reporter)
            result.deployment = record.id
        elif current is not None:
            result.deployment = current.id
    return result


def _prune_cache(cache: Path, keep: set[str], reporter: Reporter) -> None:
    """After a deploy: the cached archives nobody used for weeks go (``net/downloads``); those
    of the stack just deployed stay, to deploy another target from."""
    removed, freed = prune_unused_archives(cache, keep)
    if removed:
        reporter.info(
            f"{cache}: removed {removed} cached archive(s) unused for {UNUSED_ARCHIVE_DAYS} "
            f"days ({freed / 1e6:.1f} MB)"
        )


def _app_commands(
    target: Path, apps: list[tuple[str, str | None]], reporter: Reporter
) -> dict[str, list[str]]:
    """The command of each deployed app. Called after the switch: an app whose layer config
    cannot be read is a warning, never a failure of a deploy that already happened."""
    commands: dict[str, list[str]] = {}
    for install_target, module in apps:
        if not module:
            continue
        try:
            commands[install_target] = run_command(target, install_target, module)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            reporter.warning(f"{target / install_target}: cannot tell how to run it ({exc})")
    return commands


# ---------------------------------------------------------------------------
# Fetching and verifying


def _fetch(
    source: Source,
    items: list[LayerMetadata],
    downloader: Downloader,
    current: Path | None,
    reporter: Reporter,
    verified: dict[str, KnownCopy],
) -> tuple[dict[str, Path], dict[str, DeltaPlan]]:
    """sha256 -> a verified archive file for each of ``items``, or the ranges that update
    its deployed version (``delta``); ``verified`` gets the copies of local archives that
    were hashed."""
    found: dict[str, Path] = {}
    deltas: dict[str, DeltaPlan] = {}
    downloads: list[Download] = []
    try:
        for item in items:
            _plan_one(
                item, source, downloader, current, reporter, found, deltas, downloads, verified
            )
        found.update(downloader.fetch_all(downloads))
    except BaseException:
        for delta in deltas.values():  # fetched ranges: removed with the failed deploy
            delta.discard()
        raise
    return found, deltas


def _plan_one(
    item: LayerMetadata,
    source: Source,
    downloader: Downloader,
    current: Path | None,
    reporter: Reporter,
    found: dict[str, Path],
    deltas: dict[str, DeltaPlan],
    downloads: list[Download],
    verified: dict[str, KnownCopy],
) -> None:
    """Where ``item``'s new version comes from: ranges (``deltas``), a local archive
    (``found``, checked here; the copy hashed in ``verified``) or a whole download
    (``downloads``)."""
    assert item.archive_name is not None
    where: ArchiveSource = source.archive(item.archive_name, item)
    ref = item.venvlayers_index
    base = current / item.install_target if current is not None else None
    delta = None
    if ref is not None and base is not None:
        from venvlayers.deploy.delta import plan_delta  # only for an update

        beside = source.beside(ref.name, ref.sha256)
        delta = plan_delta(item, where, beside, base, downloader, reporter)
    if delta is not None:
        deltas[item.archive_sha256] = delta
    elif where.local is not None:
        copy = _verify_local(where.local, item)
        if copy is not None:
            verified[item.archive_sha256] = copy
        found[item.archive_sha256] = where.local
    elif where.download is not None:
        downloads.append(where.download)


def _verify_local(archive: Path, item: LayerMetadata) -> KnownCopy | None:
    """Refuse a local archive whose size or sha256 is not the metadata's, before the
    target is touched. Returns the copy that was hashed when it had not changed for a
    while (``KnownCopy``): unpacking it then does not hash its bytes again (0.8 CPU s per
    GB here)."""
    before = archive.stat()
    if item.archive_size is not None and before.st_size != item.archive_size:
        raise DeployError(
            f"{archive}: size {before.st_size} bytes, metadata says {item.archive_size}; the download is incomplete or altered",
            path=archive,
        )
    started = time.time_ns()
    digest = sha256_file(archive)
    if digest != item.archive_sha256:
        raise DeployError(
            f"{archive}: sha256 {digest} does not match the metadata ({item.archive_sha256}); refusing to unpack",
            path=archive,
        )
    after = archive.stat()
    if KnownCopy.of(before) == KnownCopy.of(after) and KnownCopy.is_settled(after, started):
        return KnownCopy.of(after)
    return None


# ---------------------------------------------------------------------------
# The target's state


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise DeployError(f"--target {target}: exists and is not a folder", path=target)
    state = target / STATE_DIR
    if state.exists() and not state.is_dir():
        raise DeployError(f"{state}: exists and is not a folder; move it away", path=state)


def read_current(target: Path, reporter: Reporter) -> DeploymentRecord | None:
    """The record of the deployment ``current`` names (None: nothing deployed, or unreadable)."""
    return _read_record(target / STATE_DIR / CURRENT, reporter)


def _read_record(link: Path, reporter: Reporter) -> DeploymentRecord | None:
    if not link.is_symlink() and not link.exists():
        return None
    path = link / RECORD_NAME
    try:
        return read_record(DeploymentRecord, path, DeployError)
    except (VenvlayersError, OSError, UnicodeDecodeError):
        # without it every layer is unpacked again: slower, never wrong
        reporter.warning(f"{path}: unreadable deploy record; unpacking every layer again")
        return None


def _reusable(item: LayerMetadata, current: DeploymentRecord | None, target: Path) -> bool:
    if current is None:
        return False
    for layer in current.layers:
        if (
            layer.install_target == item.install_target
            and layer.archive_sha256 == item.archive_sha256
        ):
            folder = _current_dir(target)
            return folder is not None and home_link(folder, item.install_target) is not None
    return False


def _current_dir(target: Path) -> Path | None:
    """``deployments/<id>`` of the current deployment (None: nothing is current)."""
    link = target / STATE_DIR / CURRENT
    if not link.is_symlink():
        return None
    folder = target / STATE_DIR / DEPLOYMENTS / os.path.basename(os.readlink(link))
    return folder if folder.is_dir() else None


def _check_entries(target: Path, selected: list[LayerMetadata]) -> None:
    """``TARGET/<install_target>`` must be ours (a link into .venvlayers) or absent."""
    for item in selected:
        entry = target / item.install_target
        if entry.is_symlink() and os.readlink(entry) == _active_link(item.install_target):
            continue
        if entry.exists() or entry.is_symlink():
            raise DeployError(
                f"{entry}: exists and was not deployed by this venvlayers version; move it "
                "away (or deploy into a new folder) and run again",
                path=entry,
            )


def _active_link(install_target: str) -> str:
    return f"{STATE_DIR}/{CURRENT}/{install_target}"


def target_lock(target: Path, reporter: Reporter) -> AbstractContextManager[None]:
    """Hold ``TARGET/.venvlayers/lock``: two deploys into one target never interleave; the
    second waits for the first (``runlock``)."""
    state = target / STATE_DIR
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"{state}: cannot create ({exc.strerror})", path=state) from None
    return run_lock_file(state / LOCK_NAME, what=f"deploy target {target}", notify=reporter.info)


def clean_debris(target: Path, reporter: Reporter) -> None:
    """Remove what killed runs left: staging folders and half-made links (lock held)."""
    leftovers: list[Path] = []
    deployments = target / STATE_DIR / DEPLOYMENTS
    if deployments.is_dir():
        leftovers += deployments.glob(_STAGING_PREFIX + "*")
    leftovers += list((target / STATE_DIR).glob(".link-*"))
    for path in leftovers:
        reporter.info(f"{path}: removing what an interrupted deploy left")
        if path.is_dir() and not path.is_symlink():
            remove_tree_quietly(path)
        else:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Staging and the switch


def _stage_and_switch(
    source: Source,
    target: Path,
    plan: StagePlan,
    platform: str,
    reporter: Reporter,
) -> DeploymentRecord:
    deployments = target / STATE_DIR / DEPLOYMENTS
    deployments.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=deployments))
    staging.chmod(0o755)
    try:
        stage_layers(staging, plan, reporter.info)
        record = _new_record(source, plan.layers, platform, deployments)
        record.write(staging / RECORD_NAME)
        final = deployments / record.id
        os.rename(staging, final)
    except BaseException:
        remove_tree_quietly(staging)
        raise
    switch_to(target, record.id, [i.install_target for i in plan.layers], keep_previous=True)
    reporter.info(f"{target}: deployment {record.id} is now current")
    tidy(target, {i.install_target for i in plan.layers}, reporter)
    return record


def _new_record(
    source: Source, selected: list[LayerMetadata], platform: str, deployments: Path
) -> DeploymentRecord:
    now = datetime.now(UTC)
    digest = hashlib.sha256("\n".join(i.archive_sha256 for i in selected).encode()).hexdigest()[:8]
    base = f"{now:%Y%m%dT%H%M%SZ}-{digest}"
    name, n = base, 1
    while (deployments / name).exists():
        n += 1
        name = f"{base}-{n}"
    return DeploymentRecord(
        id=name,
        source=source.label,
        platform=platform,
        deployed_at=now.isoformat(timespec="seconds"),
        layers=[
            DeployedLayer(
                install_target=i.install_target,
                layer_name=i.layer_name,
                archive_name=i.archive_name or "",
                archive_sha256=i.archive_sha256,
                app_launch_module=i.app_launch_module,
            )
            for i in selected
        ],
    )


def _replace_link(link: Path, value: str) -> None:
    """Point ``link`` at ``value`` in one rename (readers see the old or the new link)."""
    temporary = link.with_name(f".link-{link.name}-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.symlink(value, temporary, target_is_directory=True)
    os.replace(temporary, link)


def switch_to(target: Path, deployment: str, layers: list[str], *, keep_previous: bool) -> None:
    """Make ``deployment`` current; the one it replaces becomes ``previous``."""
    state = target / STATE_DIR
    for name in layers:  # links for new layers first: they resolve once current switches
        entry = target / name
        if not entry.is_symlink():
            _replace_link(entry, _active_link(name))
    current_link = state / CURRENT
    old = os.readlink(current_link) if current_link.is_symlink() else None
    if keep_previous and old is not None and old != f"{DEPLOYMENTS}/{deployment}":
        _replace_link(state / PREVIOUS, old)
    _replace_link(current_link, f"{DEPLOYMENTS}/{deployment}")


def tidy(target: Path, active: set[str], reporter: Reporter) -> None:
    """Drop links to layers no longer deployed, and deployments that neither current nor
    previous reach (their layers linked into other deployments, transitively).

    Runs after the switch: the deploy has happened, so what cannot be removed now is a
    warning (the next deploy tries again), never a failure."""
    try:
        _tidy(target, active)
    except OSError as exc:
        reporter.warning(
            f"{target}: old deployments not removed yet ({exc}); the next deploy retries"
        )


def _tidy(target: Path, active: set[str]) -> None:
    state = target / STATE_DIR
    for entry in target.iterdir():
        ours = entry.is_symlink() and os.readlink(entry) == _active_link(entry.name)
        if ours and entry.name not in active:
            entry.unlink()
    deployments = state / DEPLOYMENTS
    todo = [
        os.path.basename(os.readlink(state / name))
        for name in (CURRENT, PREVIOUS)
        if (state / name).is_symlink()
    ]
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        if name in keep or not (deployments / name).is_dir():
            continue
        keep.add(name)
        for entry in (deployments / name).iterdir():
            home = home_link(deployments / name, entry.name) if entry.is_symlink() else None
            if home is not None:
                todo.append(home.split("/")[1])
    for folder in deployments.iterdir():
        if folder.name not in keep and not folder.name.startswith("."):
            remove_tree_quietly(folder)


def rollback(target: Path, *, reporter: Reporter) -> DeployResult:
    """Make the previous deployment current again (and the current one previous)."""
    # absolute and without ".." (`--target ../x`), symlinks kept: deploy where the user said
    target = Path(os.path.abspath(target))
    state = target / STATE_DIR
    if not (state / PREVIOUS).is_symlink():
        raise DeployError(
            f"{target}: no previous deployment to roll back to (deploy an update first)",
            path=target,
        )
    with target_lock(target, reporter):
        clean_debris(target, reporter)
        previous = _read_record(state / PREVIOUS, reporter)
        if previous is None:
            raise DeployError(f"{state / PREVIOUS}: the previous deployment is unreadable")
        layers = [layer.install_target for layer in previous.layers]
        switch_to(target, previous.id, layers, keep_previous=True)
        reporter.info(f"{target}: rolled back to deployment {previous.id}")
        tidy(target, set(layers), reporter)
    apps = _app_commands(
        target, [(i.install_target, i.app_launch_module) for i in previous.layers], reporter
    )
    return DeployResult(target, [], layers, apps, deployment=previous.id)


# ---------------------------------------------------------------------------
# Running apps


def run_command(target: Path, install_target: str, module: str | None) -> list[str]:
    layer_path = target / install_target
    config = postinstall.load_config(layer_path)
    python = postinstall.resolve(layer_path, config["python"])
    return [str(python), "-m", str(module)]


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
