"""Target platform tags (as venvstacks names them) and what each means to uv and to wheels."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from enum import StrEnum

from packaging.markers import Marker
from packaging.tags import Tag, parse_tag
from packaging.utils import parse_wheel_filename


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


def wheel_platform_tags(
    target: Platform, *, glibc: tuple[int, int], macosx: tuple[int, int]
) -> list[str]:
    """Every wheel platform tag installable on ``target``, most specific first."""
    if target.is_windows:
        return [target.value]
    if target.is_linux:
        arch = target.arch
        tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc[1], 16, -1)]
        # Legacy aliases for the manylinux 2_17 / 2_12 / 2_5 baselines
        if glibc >= (2, 17):
            tags.append(f"manylinux2014_{arch}")
        if arch == "x86_64":
            tags += [f"manylinux_2_{m}_{arch}" for m in (12, 5)]
            tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
        tags.append(f"linux_{arch}")
        return tags
    # macOS: every version from the target down to 10.x, with the fat-binary variants
    arch = "arm64" if target == Platform.MACOSX_ARM64 else "x86_64"
    versions: list[tuple[int, int]] = []
    for major in range(macosx[0], 10, -1):
        top_minor = macosx[1] if major == macosx[0] else 0
        versions += [(major, minor) for minor in range(top_minor, -1, -1)]
    if arch == "x86_64":
        versions += [(10, minor) for minor in range(16, 3, -1)]
    variants = [arch, "universal2"] + (["intel", "universal"] if arch == "x86_64" else [])
    return [f"macosx_{a}_{b}_{v}" for a, b in versions for v in variants]


def target_text(platform: Platform, *, glibc: tuple[int, int], macosx: tuple[int, int]) -> str:
    """The platform with the oldest OS it targets, for messages."""
    if platform.is_linux:
        return f"{platform} (glibc {glibc[0]}.{glibc[1]})"
    if platform.is_macos:
        return f"{platform} (macOS {macosx[0]}.{macosx[1]})"
    return str(platform)


def wheel_tags(filename: str) -> frozenset[Tag]:
    """The tags a wheel file name declares (none for a name that is not a wheel's)."""
    try:
        return parse_wheel_filename(filename)[3]
    except Exception:
        return frozenset()


def accepted_tags(py_nodot: str, plat_tags: list[str]) -> frozenset[Tag]:
    """Wheel tags a CPython ``py_nodot`` (e.g. "312") installs on the given platform tags."""
    interpreters = [f"cp{py_nodot}"]
    abis = [f"cp{py_nodot}", "abi3", "none"]
    tags: set[Tag] = set()
    for plat in [*plat_tags, "any"]:
        for abi in abis:
            tags.add(Tag(f"cp{py_nodot}", abi, plat))
        for minor in range(int(py_nodot[1:]), 1, -1):
            tags.add(Tag(f"cp3{minor}", "abi3", plat))
        for py in ("py3", f"py{py_nodot}", *interpreters):
            tags.add(Tag(py, "none", plat))
    tags |= set(parse_tag(f"py2.py3-none-{plat_tags[0]}")) if plat_tags else set()
    return frozenset(tags)


def marker_environment(platform: Platform, py_version: str) -> dict[str, str]:
    """PEP 508 marker values of CPython ``py_version`` on ``platform``."""
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
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def platform_of_marker(marker: str) -> Platform | None:
    """The target platform whose lock environment uv names (uv reorders the clauses)."""
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
