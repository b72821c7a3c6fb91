"""Target platform tags (as venvstacks names them) and what each means to uv and to wheels."""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

# packaging is imported by the functions that use it: a deploy needs only host_platform
if TYPE_CHECKING:
    from packaging.tags import Tag


class Platform(StrEnum):
    WIN_AMD64 = "win_amd64"
    WIN_ARM64 = "win_arm64"
    LINUX_X86_64 = "linux_x86_64"
    LINUX_AARCH64 = "linux_aarch64"
    MACOSX_ARM64 = "macosx_arm64"
    MACOSX_X86_64 = "macosx_x86_64"

    @property
    def os(self) -> str:
        return self.value.partition("_")[0]

    @property
    def arch(self) -> str:
        return self.value.partition("_")[2]

    @property
    def is_x86_64(self) -> bool:
        return self.arch in ("x86_64", "amd64")

    @property
    def is_windows(self) -> bool:
        return self.os == "win"

    @property
    def is_macos(self) -> bool:
        return self.os == "macosx"

    @property
    def is_linux(self) -> bool:
        return self.os == "linux"


ALL_PLATFORMS: tuple[Platform, ...] = tuple(sorted(Platform))

#: The grammar of a platform tag in file names and metadata (venvstacks' ``<os>_<arch>``):
#: every ``Platform``, and platforms a newer tool may publish, but never a path.
PLATFORM_TAG = re.compile(r"(?:linux|macosx|win)_[a-z0-9_]+")


def platform_tag_problem(tag: str) -> str | None:
    """Why ``tag`` (read from metadata or a file name) is not a platform tag, or None."""
    if PLATFORM_TAG.fullmatch(tag) is None or len(tag) > 40:
        return f"{tag[:60]!r} is not a platform tag (linux_x86_64, macosx_arm64, win_amd64, ...)"
    return None


DEFAULT_GLIBC = (2, 28)
DEFAULT_MACOSX = (13, 0)


@dataclass(frozen=True)
class PlatformMarkers:
    sys_platform: str
    platform_machine: str

    def marker(self) -> str:
        """A PEP 508 marker selecting this platform (used as a uv lock environment)."""
        return f"sys_platform == '{self.sys_platform}' and platform_machine == '{self.platform_machine}'"


MARKERS: dict[Platform, PlatformMarkers] = {
    Platform.WIN_AMD64: PlatformMarkers("win32", "AMD64"),
    Platform.WIN_ARM64: PlatformMarkers("win32", "ARM64"),
    Platform.LINUX_X86_64: PlatformMarkers("linux", "x86_64"),
    Platform.LINUX_AARCH64: PlatformMarkers("linux", "aarch64"),
    Platform.MACOSX_ARM64: PlatformMarkers("darwin", "arm64"),
    Platform.MACOSX_X86_64: PlatformMarkers("darwin", "x86_64"),
}


def host_platform() -> Platform:
    """The platform tag of the machine we run on."""
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "arm64", "aarch64": "aarch64"}.get(
        machine, machine
    )
    if sys.platform == "win32":
        return Platform.WIN_ARM64 if arch in ("arm64", "aarch64") else Platform.WIN_AMD64
    if sys.platform == "darwin":
        return Platform.MACOSX_ARM64 if arch in ("arm64", "aarch64") else Platform.MACOSX_X86_64
    return Platform.LINUX_AARCH64 if arch in ("arm64", "aarch64") else Platform.LINUX_X86_64


def target_text(platform: Platform, *, glibc: tuple[int, int], macosx: tuple[int, int]) -> str:
    """The platform with the oldest OS it targets, for messages."""
    if platform.is_linux:
        return f"{platform} (glibc {glibc[0]}.{glibc[1]})"
    if platform.is_macos:
        return f"{platform} (macOS {macosx[0]}.{macosx[1]})"
    return str(platform)


def uv_python_platform(platform: Platform, *, glibc: tuple[int, int]) -> str:
    """uv's ``--python-platform`` for installing a layer built for ``platform``: on Linux the
    wheels for the oldest glibc the layer targets (as venvstacks installs them), not those
    the build machine's newer glibc would pick; on macOS uv reads MACOSX_DEPLOYMENT_TARGET."""
    arch = "aarch64" if platform.arch in ("arm64", "aarch64") else "x86_64"
    if platform.is_linux:
        return f"{arch}-manylinux_{glibc[0]}_{glibc[1]}"
    if platform.is_macos:
        return f"{arch}-apple-darwin"
    return f"{arch}-pc-windows-msvc"


def marker_environment(
    platform: Platform, py_version: str, implementation: str = "CPython"
) -> dict[str, str]:
    """PEP 508 marker values of ``implementation`` (``CPython``, ``PyPy``) ``py_version``
    on ``platform``."""
    markers = MARKERS[platform]
    return {
        "sys_platform": markers.sys_platform,
        "platform_machine": markers.platform_machine,
        "platform_system": {"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}[
            markers.sys_platform
        ],
        "os_name": "nt" if platform.is_windows else "posix",
        "python_version": ".".join(py_version.split(".")[:2]),
        "python_full_version": py_version,
        "implementation_name": implementation.lower(),
        "platform_python_implementation": implementation,
    }


def platform_of_marker(marker: str) -> Platform | None:
    """The target platform whose lock environment uv names (uv reorders the clauses)."""
    from packaging.markers import Marker

    for target, markers in MARKERS.items():
        environment = marker_environment(target, "3.12.0")
        try:
            if Marker(marker).evaluate(environment) and all(
                f"'{value}'" in marker for value in (markers.sys_platform, markers.platform_machine)
            ):
                return target
        except Exception:
            return None
    return None


def platform_tags(
    target: Platform, *, glibc: tuple[int, int], macosx: tuple[int, int]
) -> list[str]:
    """Every wheel platform tag installable on ``target``, most specific first.

    macOS comes from ``packaging.tags.mac_platforms`` (so universal2 wheels count for both
    architectures, 10.x ones included); Linux is manylinux per PEP 600 (glibc ``2.Y`` and
    older, with the legacy manylinux1/2010/2014 names; musllinux never matches a glibc
    target) plus the plain ``linux_<arch>`` tag of local builds, which venvstacks accepts.
    """
    if target.is_windows:
        return [target.value]
    if target.is_macos:
        from packaging.tags import mac_platforms

        arch = "arm64" if target == Platform.MACOSX_ARM64 else "x86_64"
        return list(mac_platforms(macosx, arch))
    arch = target.arch
    tags: list[str] = []
    for minor in range(glibc[1], -1, -1):
        tags.append(f"manylinux_{glibc[0]}_{minor}_{arch}")
        legacy = _LEGACY_MANYLINUX.get((glibc[0], minor))
        if legacy:
            tags.append(f"{legacy}_{arch}")
    tags.append(f"linux_{arch}")
    return tags


_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def compatible_tags(
    target: Platform, *, py_version: str, glibc: tuple[int, int], macosx: tuple[int, int]
) -> frozenset[Tag]:
    """Every wheel tag a CPython ``py_version`` on ``target`` installs (``packaging.tags``)."""
    from packaging.tags import compatible_tags as generic_compatible_tags
    from packaging.tags import cpython_tags

    major, minor = (int(part) for part in py_version.split(".")[:2])
    plats = platform_tags(target, glibc=glibc, macosx=macosx)
    version = (major, minor)
    return frozenset(
        [
            *cpython_tags(version, abis=[f"cp{major}{minor}"], platforms=plats),
            *generic_compatible_tags(version, interpreter=f"cp{major}{minor}", platforms=plats),
        ]
    )


def uncovered_platforms(
    wheel_names: Sequence[str],
    targets: Sequence[Platform],
    *,
    py_version: str,
    glibc: tuple[int, int],
    macosx: tuple[int, int],
    implementation: str = "CPython",
) -> list[str]:
    """The targets none of ``wheel_names`` installs on (unparseable names count for none).

    For PyPy only the platform tags are compared, as venvstacks compares them (uv chose
    wheels for the interpreter; PyPy's ABI tags name PyPy's own version)."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    wheel_tags: set[Tag] = set()
    for name in wheel_names:
        try:
            wheel_tags |= parse_wheel_filename(name)[3]
        except InvalidWheelFilename:
            continue
    if implementation != "CPython":
        platforms = {tag.platform for tag in wheel_tags}
        return [
            str(target)
            for target in targets
            if "any" not in platforms
            and not platforms & set(platform_tags(target, glibc=glibc, macosx=macosx))
        ]
    return [
        str(target)
        for target in targets
        if not wheel_tags
        & compatible_tags(target, py_version=py_version, glibc=glibc, macosx=macosx)
    ]
