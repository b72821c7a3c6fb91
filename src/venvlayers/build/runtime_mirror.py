"""Describe local runtime archives as a uv "Python downloads" JSON file.

Air-gapped builds cannot reach the python-build-standalone releases on GitHub. uv reads its
list of installable Pythons from ``UV_PYTHON_DOWNLOADS_JSON_URL`` instead when it is set, so
an internal mirror only needs the ``install_only`` archives plus one JSON file that lists
them. This module writes that file; it never runs uv.

uv silently skips entries it cannot parse (it only logs them at debug level), so every value
is checked here against what uv accepts, and a mistake fails loudly with the archive named.
"""

from __future__ import annotations

import gzip
import re
import sys
import tarfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, cast
from urllib.parse import urlsplit

from venvlayers.core.errors import VenvlayersError

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd
from venvlayers.core.fsutil import sha256_file
from venvlayers.formats.models import RuntimeDownloads

#: Implementations uv installs from a downloads JSON (venvstacks runs both).
KNOWN_IMPLEMENTATIONS = frozenset({"cpython", "pypy"})
#: Operating system names as uv spells them in its downloads JSON.
KNOWN_OS = frozenset({"linux", "darwin", "windows"})
#: Architecture families python-build-standalone publishes (uv also accepts a few more).
KNOWN_ARCH = frozenset({"x86_64", "aarch64", "i686", "armv7", "ppc64le", "s390x", "riscv64"})
#: libc names; "none" is what uv uses for macOS and Windows.
KNOWN_LIBC = frozenset({"gnu", "gnueabi", "gnueabihf", "musl", "none"})
#: Build variants uv understands ("default" is written as JSON null).
KNOWN_VARIANTS = frozenset({"freethreaded", "debug", "freethreaded+debug"})

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)((?:a|b|rc)\d+)?$")


class RuntimeMirrorError(VenvlayersError):
    """A runtime mirror entry cannot be described in a form uv accepts."""


def parse_python_version(version: str) -> tuple[int, int, int, str]:
    """Split ``3.12.1`` / ``3.13.0rc1`` into (major, minor, patch, prerelease)."""
    match = _VERSION_RE.match(version.strip())
    if match is None:
        raise RuntimeMirrorError(
            f"runtime version {version!r} is not a full CPython version; "
            "give major.minor.patch, e.g. 3.12.1 or 3.13.0rc1"
        )
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), pre or ""


def entry_key(entry: Mapping[str, Any]) -> str:
    """The key uv's own downloads JSON uses, e.g. ``cpython-3.12.1-linux-x86_64-gnu``."""
    version = f"{entry['major']}.{entry['minor']}.{entry['patch']}{entry['prerelease'] or ''}"
    if entry.get("variant"):
        version = f"{version}+{entry['variant']}"
    arch = entry["arch"]["family"]
    if entry["arch"].get("variant"):
        arch = f"{arch}_{entry['arch']['variant']}"
    return f"{entry['name']}-{version}-{entry['os']}-{arch}-{entry['libc']}"


def _check_choice(value: str, known: frozenset[str], what: str, archive: Path) -> None:
    if value not in known:
        choices = ", ".join(sorted(known))
        raise RuntimeMirrorError(
            f"{archive}: {what} {value!r} is not one uv understands; use one of {choices}",
            path=archive,
        )


def _archive_url(archive: Path, url: str | None) -> str:
    if url is None:
        return archive.resolve().as_uri()
    scheme = urlsplit(url).scheme
    if scheme not in {"file", "http", "https"}:
        raise RuntimeMirrorError(
            f"{archive}: mirror URL {url!r} must be a file://, http:// or https:// URL",
            path=archive,
        )
    return url


def downloads_entry(
    archive: Path,
    *,
    version: str,
    url: str | None = None,
    os_name: str = "linux",
    arch: str = "x86_64",
    libc: str = "gnu",
    arch_variant: str | None = None,
    variant: str | None = None,
    build: str | None = None,
    implementation: str = "cpython",
) -> dict[str, Any]:
    """Describe one runtime archive for uv: a python-build-standalone ``install_only``
    archive (``implementation="cpython"``) or a PyPy release archive (``"pypy"``).

    ``archive`` must exist (its sha256 goes into the entry, and uv checks it after
    downloading). ``url`` is where uv fetches it from; by default the archive's own
    ``file://`` URL, which suits a mirror on a shared or local file system.
    """
    if not archive.is_file():
        raise RuntimeMirrorError(
            f"runtime archive {archive} does not exist; build or download it first",
            path=archive,
        )
    major, minor, patch, prerelease = parse_python_version(version)
    _check_choice(implementation, KNOWN_IMPLEMENTATIONS, "implementation", archive)
    _check_choice(os_name, KNOWN_OS, "os", archive)
    _check_choice(arch, KNOWN_ARCH, "arch", archive)
    _check_choice(libc, KNOWN_LIBC, "libc", archive)
    if variant is not None:
        _check_choice(variant, KNOWN_VARIANTS, "variant", archive)
    entry: dict[str, Any] = {
        "name": implementation,
        "arch": {"family": arch, "variant": arch_variant},
        "os": os_name,
        "libc": libc,
        "major": major,
        "minor": minor,
        "patch": patch,
        "prerelease": prerelease,
        "url": _archive_url(archive, url),
        "sha256": sha256_file(archive),
        "variant": variant,
    }
    if build is not None:
        entry["build"] = build
    return entry


def downloads_document(entries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Key entries the way uv does; two archives for the same key is a mistake."""
    document: dict[str, dict[str, Any]] = {}
    for entry in entries:
        key = entry_key(entry)
        if key in document:
            raise RuntimeMirrorError(
                f"two runtime archives describe {key} ({document[key]['url']} and "
                f"{entry['url']}); keep one per Python version and platform"
            )
        document[key] = dict(entry)
    return document


def write_downloads_json(entries: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """Write the downloads JSON for ``entries`` to ``path`` (sorted, atomic) and return it.

    Point uv at it with ``UV_PYTHON_DOWNLOADS_JSON_URL=<path or file:// URL>``.
    """
    RuntimeDownloads.model_validate(downloads_document(entries)).write(path)
    return path


# cpython-3.12.7+20241016-x86_64-unknown-linux-gnu-install_only[_stripped].tar.gz
_PBS_NAME_RE = re.compile(
    r"^cpython-(?P<version>\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)(?:\+(?P<build>\d+))?"
    r"-(?P<arch>[a-z0-9_]+)-(?P<triple>[a-z0-9_-]+?)-install_only(?:_stripped)?\.tar\.(?:gz|zst)\Z"
)
#: ``--base-url``: a plain http(s) URL (it is written into JSON that uv reads and into
#: logs): no credentials, no query, nothing to quote
_BASE_URL_RE = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[A-Za-z0-9._~%!$&*+,;=:@/-]*)?\Z"
)
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_TRIPLES = {
    "unknown-linux-gnu": ("linux", "gnu"),
    "unknown-linux-musl": ("linux", "musl"),
    "apple-darwin": ("darwin", "none"),
    "pc-windows-msvc": ("windows", "none"),
}


def entry_from_archive_name(archive: Path, *, base_url: str | None = None) -> dict[str, Any]:
    """A downloads entry for a python-build-standalone archive, from its standard name.

    ``base_url`` is where clients will fetch it (the archive's file name is appended);
    without it, the archive's own ``file://`` URL is used.
    """
    if archive.name.startswith("pypy"):
        from venvlayers.build.pypy_mirror import pypy_entry_fields

        if base_url is not None:
            check_base_url(base_url)
        fields = pypy_entry_fields(archive)
        url = f"{base_url.rstrip('/')}/{archive.name}" if base_url else None
        return downloads_entry(archive, url=url, implementation="pypy", **fields)
    match = _PBS_NAME_RE.match(archive.name)
    if not match or match["triple"] not in _TRIPLES:
        raise RuntimeMirrorError(
            f"{archive.name} is not named like a python-build-standalone install_only archive"
            " (cpython-X.Y.Z+BUILD-ARCH-TRIPLE-install_only.tar.gz) or a PyPy release archive"
            " (pypyX.Y-vA.B.C-PLATFORM.tar.gz)",
            path=archive,
        )
    os_name, libc = _TRIPLES[match["triple"]]
    arch = {"arm64": "aarch64", "amd64": "x86_64"}.get(match["arch"], match["arch"])
    if base_url is not None:
        check_base_url(base_url)
    check_runtime_archive(archive)
    url = f"{base_url.rstrip('/')}/{archive.name}" if base_url else None
    return downloads_entry(
        archive,
        version=match["version"],
        url=url,
        os_name=os_name,
        arch=arch,
        libc=libc,
        build=match["build"],
    )


def check_base_url(base_url: str) -> None:
    """``--base-url`` must be a plain http(s) URL: no credentials (they would be published
    in the JSON), no quotes, spaces or line breaks, no ``file:`` or relative paths."""
    shown = re.sub(r"//[^/]*@", "//***@", base_url)[:80]  # never a password in a message
    try:
        credentials = urlsplit(base_url).username is not None
    except ValueError:
        credentials = False
    if credentials:
        raise RuntimeMirrorError(
            f"--base-url {shown!r}: holds credentials, which would be published with"
            " the mirror; serve the archives without them"
        )
    if not _BASE_URL_RE.match(base_url):
        raise RuntimeMirrorError(
            f"--base-url {shown!r} is not a plain http(s) URL; give one like"
            " https://mirror.example/python (no quotes, spaces, query or credentials)"
        )


def check_runtime_archive(archive: Path) -> None:
    """``archive`` must be what its name says: a gzip or zstd tar whose first member is
    under ``python/`` (python-build-standalone's install_only layout)."""
    try:
        with archive.open("rb") as f:
            head = f.read(4)
            f.seek(0)
            first = _first_tar_member(f, head)
    except (OSError, EOFError, tarfile.TarError, zlib.error, ValueError) as exc:
        raise RuntimeMirrorError(
            f"{archive}: not a readable runtime archive ({exc}); download it again", path=archive
        ) from None
    if first is None or first.split("/")[0] != "python":
        raise RuntimeMirrorError(
            f"{archive}: not a python-build-standalone install_only archive (its first member"
            f" is {first!r}, not under python/); download the install_only archive",
            path=archive,
        )


def open_tar_stream(f: BinaryIO, head: bytes) -> IO[bytes]:
    """The decompressed stream of a gzip or zstd runtime archive."""
    stream: IO[bytes]
    if head.startswith(_GZIP_MAGIC):
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=f))
    elif head.startswith(_ZSTD_MAGIC):
        stream = cast(IO[bytes], zstd.ZstdFile(f))
    else:
        raise ValueError("neither gzip nor zstd data")
    return stream


def _first_tar_member(f: BinaryIO, head: bytes) -> str | None:
    with tarfile.open(fileobj=open_tar_stream(f, head), mode="r|") as tar:
        member = tar.next()
        return member.name if member is not None else None
