"""Merge the publish outputs of several platform jobs into one release folder.

Each matrix job of a stack build publishes one platform: archives plus a metadata set in
``__venvstacks__/`` (``layout.py``). ``merge_publish_outputs`` gathers those outputs (as
``actions/download-artifact`` leaves them), checks that they describe one consistent stack,
and writes the archives side by side with every platform's metadata set (venvstacks'
``--tag-outputs`` names when there are several) and a cross-platform index. Every problem
is collected before failing, so one run shows everything that is wrong.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from venvlayers.core.errors import MergeError
from venvlayers.core.fsutil import (
    link_or_copy,
    regular_file_target,
    replace_dir,
    sha256_file,
    write_text_atomic,
)
from venvlayers.core.platforms import platform_tag_problem
from venvlayers.core.report import Reporter
from venvlayers.core.rmtree import remove_tree_quietly
from venvlayers.formats.assets import sbom_name
from venvlayers.formats.layer_index import index_problem
from venvlayers.formats.layout import MetadataSet, find_publish_outputs
from venvlayers.formats.models import (
    INDEX_NAME,
    METADATA_DIR,
    IndexArchive,
    IndexLayer,
    LayerMetadata,
    PublishInfo,
    StackIndex,
    StackManifest,
    read_model,
)
from venvlayers.formats.sbom import check_sbom
from venvlayers.release.merge_inputs import entry_problem, input_file_problem
from venvlayers.release.merge_report import (
    MergeConsistencyError,
    MergeReport,
    Problem,
    ProblemKind,
    count_noun,
)

CATEGORIES = ("runtimes", "frameworks", "applications")


@dataclass
class PlatformJob:
    """One platform's publish output, as found among the inputs."""

    platform: str
    meta: MetadataSet
    manifest: StackManifest
    info: PublishInfo | None
    layers: dict[str, tuple[str, LayerMetadata]] = field(default_factory=dict)
    """layer name -> (category, metadata)."""

    @property
    def archives_dir(self) -> Path:
        return self.meta.output_dir

    @property
    def source(self) -> str:
        return str(self.meta.manifest)


def merge_publish_outputs(
    inputs: list[Path],
    output_dir: Path,
    *,
    reporter: Reporter,
    expected_platforms: list[str] | None = None,
    report_path: Path | None = None,
) -> MergeReport:
    """Check the platform outputs in ``inputs`` and merge them into ``output_dir``.

    Raises ``MergeConsistencyError`` (carrying the full report) when any check fails;
    ``output_dir`` is then left untouched. ``report_path`` receives the markdown report
    either way; the report also goes to the step summary.
    """
    output_dir = Path(output_dir)
    if report_path is not None:
        regular_file_target(report_path)  # a device or a folder fails before any work
    if not inputs:
        raise MergeError("merge: no input folders given; pass the downloaded publish outputs")
    _check_inputs(inputs, output_dir)
    problems: list[Problem] = []
    jobs = _load_jobs(inputs, output_dir.resolve(), problems)
    missing = _check_platforms(jobs, expected_platforms, problems)
    _check_runs(jobs, problems)
    for job in jobs:
        _check_job_layers(job, problems)
    _check_locks(jobs, problems)
    _check_archive_names(jobs, problems)

    layer_names = sorted({name for job in jobs for name in job.layers} | _missing_layers(jobs))
    report = MergeReport(
        platforms=sorted({job.platform for job in jobs} | set(missing)),
        layers=layer_names,
        missing_platforms=missing,
        problems=sorted(set(problems), key=_problem_order),
    )
    for job in jobs:
        for name, (_, meta) in job.layers.items():
            if meta.archive_size is not None:
                report.sizes.setdefault(name, {})[job.platform] = meta.archive_size
    if report.problems:
        for problem in report.problems:
            reporter.error(MergeError(problem.describe()))
        _publish_report(report, reporter, report_path)
        raise MergeConsistencyError(report)

    index = build_index(jobs, output_dir)
    _write_output(jobs, index, output_dir)
    report.output_dir = output_dir
    reporter.info(
        f"merged {count_noun(len(layer_names), 'layer')} for {', '.join(report.platforms)} into {output_dir}"
    )
    _publish_report(report, reporter, report_path)
    return report


def _problem_order(problem: Problem) -> tuple[str, str, str, str]:
    return (problem.layer or "", problem.platform or "", problem.kind.value, problem.message)


def _publish_report(report: MergeReport, reporter: Reporter, report_path: Path | None) -> None:
    markdown = report.to_markdown()
    if report_path is not None:
        write_text_atomic(report_path, markdown)
    reporter.summary(markdown)


def _check_inputs(inputs: Iterable[Path], output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise MergeError(f"merge: --output-dir {output_dir} is not a folder; choose a folder")
    out = output_dir.resolve()
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            raise MergeError(f"merge: input {path} is not a folder; pass publish output folders")
        resolved = path.resolve()
        if resolved == out or resolved.is_relative_to(out):
            raise MergeError(
                f"merge: input {path} is inside the output folder {output_dir}, which merge replaces;"
                " choose another --output-dir"
            )


def _load_jobs(inputs: list[Path], exclude: Path, problems: list[Problem]) -> list[PlatformJob]:
    jobs: dict[str, PlatformJob] = {}
    for item in inputs:
        found = find_publish_outputs(Path(item), exclude=exclude)
        if not found:
            problems.append(
                Problem(
                    ProblemKind.NO_OUTPUT,
                    f"{item} holds no {METADATA_DIR}/venvstacks[-<platform>].json"
                    " (directly or one folder down); did its publish job fail?",
                )
            )
        for meta in found:
            job = _load_job(meta, problems)
            if job is None:
                continue
            if job.platform in jobs:
                problems.append(
                    Problem(
                        ProblemKind.DUPLICATE_PLATFORM,
                        f"published twice: {jobs[job.platform].source} and {job.source};"
                        " give each platform to exactly one job",
                        platform=job.platform,
                    )
                )
                continue
            jobs[job.platform] = job
    return [jobs[name] for name in sorted(jobs)]


def _load_job(meta: MetadataSet, problems: list[Problem]) -> PlatformJob | None:
    info_path = meta.publish_info
    for path in (meta.manifest, info_path):
        if path.exists() and (bad := input_file_problem(meta.output_dir, path)):
            problems.append(Problem(ProblemKind.UNREADABLE, bad, platform=meta.platform))
            return None
    try:
        manifest = read_model(StackManifest, meta.manifest, MergeError)
        info = read_model(PublishInfo, info_path, MergeError) if info_path.exists() else None
    except MergeError as exc:
        problems.append(Problem(ProblemKind.UNREADABLE, exc.message, platform=meta.platform))
        return None
    platform = meta.platform or _untagged_platform(manifest, info)
    if platform is None:
        problems.append(
            Problem(
                ProblemKind.UNREADABLE,
                f"{meta.manifest} does not say which platform it was published for"
                " (no target_platform); publish it again, with --tag-outputs",
            )
        )
        return None
    if bad := platform_tag_problem(platform):  # it becomes file names in the output
        problems.append(Problem(ProblemKind.UNREADABLE, f"{meta.manifest}: {bad}; refusing it"))
        return None
    job = PlatformJob(platform, meta, manifest, info)
    if info is not None and info.platform != platform:
        problems.append(
            Problem(
                ProblemKind.PLATFORM_MISMATCH,
                f"{info_path} says platform {info.platform!r} but was published as {platform!r}",
                platform=platform,
            )
        )
    for category in sorted(manifest.layers):
        for entry in manifest.layers[category]:
            if bad := entry_problem(entry):  # names that become paths in the output
                problems.append(
                    Problem(ProblemKind.UNREADABLE, f"{meta.manifest}: {bad}", platform=platform)
                )
                continue
            if entry.layer_name in job.layers:
                problems.append(
                    Problem(
                        ProblemKind.DUPLICATE_LAYER,
                        f"{meta.manifest} lists the layer twice",
                        layer=entry.layer_name,
                        platform=platform,
                    )
                )
                continue
            job.layers[entry.layer_name] = (category, entry)
    return job


def _untagged_platform(manifest: StackManifest, info: PublishInfo | None) -> str | None:
    """The platform of an untagged ``venvstacks.json``: its layers' (or its job's) one platform."""
    seen = {
        meta.target_platform
        for metas in manifest.layers.values()
        for meta in metas
        if meta.target_platform
    }
    if info is not None:
        seen.add(info.platform)
    return seen.pop() if len(seen) == 1 else None


def _check_platforms(
    jobs: list[PlatformJob], expected: list[str] | None, problems: list[Problem]
) -> list[str]:
    if expected is None:
        return []
    found = {job.platform for job in jobs}
    missing = sorted(set(expected) - found)
    for platform in missing:
        problems.append(
            Problem(
                ProblemKind.MISSING_PLATFORM,
                f"no publish output for expected platform {platform}; did its matrix job fail?",
                platform=platform,
            )
        )
    for platform in sorted(found - set(expected)):
        problems.append(
            Problem(
                ProblemKind.UNEXPECTED_PLATFORM,
                f"publish output for {platform}, which is not among the expected platforms"
                f" ({', '.join(sorted(expected))})",
                platform=platform,
            )
        )
    return missing


def _check_runs(jobs: list[PlatformJob], problems: list[Problem]) -> None:
    """Every job must have built the same spec with the same venvlayers version."""
    recorded = [job for job in jobs if job.info is not None]
    for kind, attribute, what in (
        (ProblemKind.SPEC_MISMATCH, "spec_hash", "different stack specs"),
        (ProblemKind.TOOL_MISMATCH, "tool_version", "different venvlayers versions"),
    ):
        values = {job.platform: str(getattr(job.info, attribute)) for job in recorded}
        if len(set(values.values())) > 1:
            listed = ", ".join(f"{p}: {v}" for p, v in sorted(values.items()))
            problems.append(
                Problem(
                    kind,
                    f"the platform jobs ran {what} ({attribute} {listed});"
                    " rerun every platform job from the same commit",
                )
            )


def _check_job_layers(job: PlatformJob, problems: list[Problem]) -> None:
    platform = job.platform
    if job.info is not None:
        expected = set(job.info.layers)
        for name in sorted(expected - set(job.layers)):
            problems.append(
                Problem(
                    ProblemKind.MISSING_LAYER,
                    f"targets {platform} but its archive was not published",
                    layer=name,
                    platform=platform,
                )
            )
        for name in sorted(set(job.layers) - expected):
            problems.append(
                Problem(
                    ProblemKind.UNEXPECTED_LAYER,
                    f"was published for {platform}, which the spec does not target for it"
                    f" (per {job.meta.publish_info})",
                    layer=name,
                    platform=platform,
                )
            )
    for name, (_, meta) in job.layers.items():
        _check_layer_metadata(job, name, meta, problems)
        _check_archive(job, name, meta, problems)
        # venvlayers wrote the outputs holding its publish record; venvstacks' have no SBOMs
        if sbom_problem := check_sbom(job.archives_dir, meta, required=job.info is not None):
            problems.append(
                Problem(ProblemKind.SBOM, sbom_problem, layer=name, platform=job.platform)
            )
        if bad_index := index_problem(job.archives_dir, meta.archive_name, meta.venvlayers_index):
            problems.append(
                Problem(ProblemKind.LAYER_INDEX, bad_index, layer=name, platform=job.platform)
            )


def _check_layer_metadata(
    job: PlatformJob, name: str, meta: LayerMetadata, problems: list[Problem]
) -> None:
    platform = job.platform
    if meta.target_platform is not None and meta.target_platform != platform:
        problems.append(
            Problem(
                ProblemKind.PLATFORM_MISMATCH,
                f"metadata says target_platform {meta.target_platform!r} but was published as {platform!r}",
                layer=name,
                platform=platform,
            )
        )
    snippet = job.meta.env_metadata(name)
    try:
        if snippet.exists() and (bad := input_file_problem(job.archives_dir, snippet)):
            raise MergeError(bad)
        detail = read_model(LayerMetadata, snippet, MergeError)
    except MergeError as exc:
        problems.append(
            Problem(ProblemKind.METADATA_MISMATCH, exc.message, layer=name, platform=platform)
        )
        return
    if detail.dump() != meta.dump():
        problems.append(
            Problem(
                ProblemKind.METADATA_MISMATCH,
                f"{snippet} differs from the entry in {job.meta.manifest.name}; republish this platform",
                layer=name,
                platform=platform,
            )
        )


def _check_archive(
    job: PlatformJob, name: str, meta: LayerMetadata, problems: list[Problem]
) -> None:
    platform = job.platform

    def problem(kind: ProblemKind, message: str) -> None:
        problems.append(Problem(kind, message, layer=name, platform=platform))

    if meta.archive_name is None or meta.archive_size is None or meta.archive_hashes is None:
        problem(
            ProblemKind.MISSING_ARCHIVE,
            "metadata has no archive_name/archive_size/archive_hashes; was it written by `publish`?",
        )
        return
    archive = job.archives_dir / meta.archive_name
    if not archive.is_file():
        problem(
            ProblemKind.MISSING_ARCHIVE,
            f"archive {meta.archive_name} is missing from {job.archives_dir}; upload it with the metadata",
        )
        return
    if bad := input_file_problem(job.archives_dir, archive):
        problem(ProblemKind.MISSING_ARCHIVE, bad)
        return
    size = archive.stat().st_size
    if size != meta.archive_size:
        problem(
            ProblemKind.SIZE_MISMATCH,
            f"{archive} is {size} bytes but the metadata says {meta.archive_size}; the archive was"
            " replaced or truncated, republish this platform",
        )
    digest = sha256_file(archive)
    if digest != meta.archive_hashes.sha256:
        problem(
            ProblemKind.HASH_MISMATCH,
            f"{archive} has sha256 {digest} but the metadata says {meta.archive_hashes.sha256};"
            " republish this platform",
        )


def _check_locks(jobs: list[PlatformJob], problems: list[Problem]) -> None:
    """A layer must come from the same lock (and install target) on every platform."""
    by_layer: dict[str, dict[str, LayerMetadata]] = defaultdict(dict)
    for job in jobs:
        for name, (_, meta) in job.layers.items():
            by_layer[name][job.platform] = meta
    for name in sorted(by_layer):
        metas = by_layer[name]
        for kind, fields, hint in (
            (
                ProblemKind.LOCK_MISMATCH,
                ("requirements_hash", "lock_version", "locked_at"),
                "build every platform from the same commit of requirements/",
            ),
            (
                ProblemKind.METADATA_MISMATCH,
                ("install_target",),
                "build every platform from the same spec",
            ),
        ):
            for attribute in fields:
                values = {p: str(getattr(m, attribute)) for p, m in metas.items()}
                if len(set(values.values())) > 1:
                    listed = ", ".join(f"{p}: {v}" for p, v in sorted(values.items()))
                    problems.append(
                        Problem(
                            kind,
                            f"{attribute} differs between platforms ({listed}); {hint}",
                            layer=name,
                        )
                    )


def _check_archive_names(jobs: list[PlatformJob], problems: list[Problem]) -> None:
    users: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for job in jobs:
        for name, (_, meta) in job.layers.items():
            if meta.archive_name:
                users[meta.archive_name].append((name, job.platform))
    for archive_name in sorted(users):
        owners = sorted(users[archive_name])
        if len(owners) < 2:
            continue
        layers = {layer for layer, _ in owners}
        listed = ", ".join(f"{layer} on {platform}" for layer, platform in owners)
        problems.append(
            Problem(
                ProblemKind.DUPLICATE_ARCHIVE,
                f"archive name {archive_name} is used by {listed}; publish with --tag-outputs"
                " so archive names include the platform",
                layer=owners[0][0] if len(layers) == 1 else None,
            )
        )


def _missing_layers(jobs: list[PlatformJob]) -> set[str]:
    return {name for job in jobs if job.info is not None for name in job.info.layers}


def _merged_set(job: PlatformJob, jobs: list[PlatformJob], output_dir: Path) -> MetadataSet:
    """Where a job's metadata goes in the merged output: venvstacks' layout, platform-tagged
    (as ``--tag-outputs`` names it) unless it was one untagged output."""
    tagged = job.meta.tagged or len(jobs) > 1
    return MetadataSet.for_output(output_dir, job.platform if tagged else None)


def build_index(jobs: list[PlatformJob], output_dir: Path) -> StackIndex:
    """The merged index; call only on jobs that passed every check."""
    layers: dict[str, IndexLayer] = {}
    for job in jobs:
        merged = _merged_set(job, jobs, output_dir)
        for name, (category, meta) in sorted(job.layers.items()):
            assert meta.archive_name and meta.archive_size is not None and meta.archive_hashes
            entry = layers.setdefault(
                name,
                IndexLayer(
                    category=category,
                    install_target=meta.install_target,
                    lock_version=meta.lock_version,
                    requirements_hash=meta.requirements_hash,
                    locked_at=meta.locked_at,
                    platforms={},
                ),
            )
            entry.platforms[job.platform] = IndexArchive(
                archive_name=meta.archive_name,
                archive_size=meta.archive_size,
                sha256=meta.archive_hashes.sha256,
                archive_build=meta.archive_build,
                metadata=merged.relative(merged.env_metadata(name)),
            )
    infos = [job.info for job in jobs if job.info is not None]
    return StackIndex(
        platforms=[job.platform for job in jobs],
        layers=dict(sorted(layers.items())),
        tool_version=infos[0].tool_version if infos else None,
        spec_hash=infos[0].spec_hash if infos else None,
    )


def _write_output(jobs: list[PlatformJob], index: StackIndex, output_dir: Path) -> None:
    """Assemble everything in a staging folder beside ``output_dir``, then swap it in."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".merging", dir=output_dir.parent)
    )
    # mkdtemp makes a private folder; the merged output is meant to be shared
    staging.chmod(0o755)
    try:
        for job in jobs:
            for _, meta in job.layers.values():
                assert meta.archive_name
                # the file itself, never a link (checked to lie inside the input)
                archive = os.path.realpath(job.archives_dir / meta.archive_name)
                link_or_copy(archive, staging / meta.archive_name)
                sbom = job.archives_dir / sbom_name(meta.archive_name)
                if sbom.is_file() and not input_file_problem(job.archives_dir, sbom):
                    link_or_copy(os.path.realpath(sbom), staging / sbom.name)
                if meta.venvlayers_index is not None:  # checked: a file of the input
                    name = meta.venvlayers_index.name
                    link_or_copy(job.archives_dir / name, staging / name)
            _copy_metadata(job, _merged_set(job, jobs, staging))
        index.write(staging / INDEX_NAME)
        replace_dir(staging, output_dir)
    except BaseException:
        remove_tree_quietly(staging)
        raise


def _copy_metadata(job: PlatformJob, merged: MetadataSet) -> None:
    """The job's manifest, layer files and publish record, bytes unchanged, at their merged names."""
    pairs = [(job.meta.manifest, merged.manifest)]
    pairs += [(job.meta.env_metadata(name), merged.env_metadata(name)) for name in job.layers]
    if job.meta.publish_info.is_file():
        pairs.append((job.meta.publish_info, merged.publish_info))
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.realpath(source), target)


__all__ = [
    "INDEX_NAME",
    "MergeConsistencyError",
    "MergeReport",
    "ProblemKind",
    "build_index",
    "merge_publish_outputs",
]
