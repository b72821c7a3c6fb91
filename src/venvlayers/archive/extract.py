"""Safe extraction: every member checked, unpacked beside the destination, renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import IO

from venvlayers.archive.formats import READ_SIZE, ArchiveFormat, detect_format
from venvlayers.archive.read import CORRUPT, KnownCopy, Member, corrupt, members
from venvlayers.archive.scan import check_root_name
from venvlayers.core.errors import ArchiveError
from venvlayers.core.fsutil import replace_dir
from venvlayers.core.linkfree import LinkFreeTree
from venvlayers.core.rmtree import remove_tree_quietly

# --- safe extraction --------------------------------------------------------------------


# A source file's bytecode in __pycache__: <stem>.<cache tag>[.opt-N].pyc (PEP 3147/488)
_PYC = re.compile(r"(.+?)\.[a-z]+-[0-9]+(?:\.opt-[0-9]+)?\.pyc")


class _Extractor:
    def __init__(
        self,
        archive: Path,
        stage: Path,
        root: str,
        sibling_roots: Collection[str],
        reuse_from: Path | None = None,
    ):
        self.archive = archive
        self.stage = stage  # the temp folder that will become dest_parent/root
        self.root = root
        self.sibling_roots = frozenset(sibling_roots)
        self.seen: dict[tuple[str, ...], str] = {}
        self.real_dirs: dict[tuple[str, ...], Path] = {(): stage}  # made by us, no links
        self.reuse = _Reuse(reuse_from) if reuse_from is not None else None

    def refuse(self, member: str, why: str) -> ArchiveError:
        return ArchiveError(
            f"{self.archive}: refusing to unpack member {member!r}: {why}. "
            "The archive is unsafe or damaged; do not deploy it."
        )

    def parts(self, raw: str, member: str, what: str = "it") -> tuple[str, ...]:
        """Path parts below the layer root; refuses anything that could land elsewhere."""
        if "\0" in raw:
            raise self.refuse(member, f"{what} contains a NUL byte")
        if raw.startswith(("/", "\\")) or (len(raw) >= 2 and raw[1] == ":"):
            raise self.refuse(member, f"{what} has an absolute path")
        if os.name == "nt" and "\\" in raw:
            raise self.refuse(member, f"{what} contains a backslash")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(member, f"{what} contains a '..' component")
        if not parts or parts[0] != self.root:
            raise self.refuse(
                member, f"{what} is not under the expected top-level folder {self.root + '/'!r}"
            )
        return tuple(parts[1:])

    def ensure_dir(self, parts: tuple[str, ...], member: str) -> Path:
        """Create (or check) a real folder at ``parts``, never following a symlink."""
        known = self.real_dirs.get(parts)
        if known is not None:
            return known
        path = self.stage
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            known = self.real_dirs.get(prefix)
            if known is not None:
                path = known
                continue
            path = path / prefix[-1]
            kind = self.seen.get(prefix)
            if kind is not None and kind != "dir":
                raise self.refuse(
                    member,
                    f"its path goes through the {kind} member {'/'.join((self.root, *prefix))!r}",
                )
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise self.refuse(member, "its path goes through a non-folder") from None
            os.chmod(path, 0o755)
            self.real_dirs[prefix] = path
        return path

    def add(self, m: Member) -> None:
        parts = self.parts(m.name, m.name)
        if parts in self.seen:
            raise self.refuse(m.name, "it appears more than once in the archive")
        if m.kind == "device":
            raise self.refuse(m.name, "it is a device file or fifo")
        if m.kind == "other":
            raise self.refuse(m.name, f"it has an unsupported member type {m.linkname}".strip())
        if not parts:
            if m.kind != "dir":
                raise self.refuse(m.name, "the top-level entry must be a folder")
            self.seen[parts] = "dir"
            return
        parent = self.ensure_dir(parts[:-1], m.name)
        target = parent / parts[-1]
        if m.kind == "dir":
            self.seen[parts] = "dir"
            self.ensure_dir(parts, m.name)
            return
        try:
            if m.kind == "file":
                self.write_file(m, target, parts)
            elif m.kind == "symlink":
                self.check_symlink(m, parts)
                os.symlink(m.linkname, target)
            else:
                os.link(self.hardlink_source(m), target, follow_symlinks=False)
            self.seen[parts] = "symlink" if m.kind == "symlink" else "file"
        except FileExistsError:
            raise self.refuse(
                m.name, "it clashes with another member of the same name (on this file system)"
            ) from None

    def check_symlink(self, m: Member, parts: tuple[str, ...]) -> None:
        target = m.linkname
        if not target or "\0" in target:
            raise self.refuse(m.name, "its symlink target is empty or invalid")
        if target.startswith(("/", "\\")) or (len(target) >= 2 and target[1] == ":"):
            raise self.refuse(
                m.name, f"its symlink target {target!r} is absolute and leaves the layer"
            )
        pieces = target.rstrip("/").split("/")
        ups = 0
        while ups < len(pieces) and pieces[ups] == "..":
            ups += 1
        rest = pieces[ups:]
        # Only "../../name/name" shapes: a '..' after a name could climb out through
        # another symlink even when the text looks like it stays inside.
        if any(p in ("", ".", "..") for p in rest) or (os.name == "nt" and "\\" in target):
            raise self.refuse(m.name, f"its symlink target {target!r} is not a plain relative path")
        inside = len(parts) - 1  # '..' steps that stay inside the layer
        if ups <= inside:
            return
        # Leaving the layer is allowed only one level up, straight into a named sibling
        # folder (a lower layer of the same deployment: venvstacks links bin/python_ to
        # ../../<runtime>/bin/python), never anywhere else in (or above) the destination.
        if ups == inside + 1 and rest and rest[0] in self.sibling_roots:
            return
        allowed = ", ".join(sorted(self.sibling_roots))
        raise self.refuse(
            m.name,
            f"its symlink target {target!r} leaves the layer {self.root + '/'!r}"
            + (f" and does not lead into one of its lower layers ({allowed})" if allowed else ""),
        )

    def hardlink_source(self, m: Member) -> Path:
        source = self.parts(m.linkname, m.name, f"its hard link target {m.linkname!r}")
        if self.seen.get(source) != "file" or not source:
            raise self.refuse(
                m.name,
                f"its hard link target {m.linkname!r} is not an earlier regular file in the layer",
            )
        return self.stage.joinpath(*source)

    def write_file(self, m: Member, target: Path, parts: tuple[str, ...]) -> None:
        assert m.open is not None
        mode = 0o755 if m.mode & 0o111 else 0o644
        old = self.reuse.candidate(parts, m.size, mode) if self.reuse is not None else None
        if old is not None and m.known_copy is not None and self.reuse is not None:
            # read and found equal moments ago, unchanged since: linked without a read
            try:
                if m.known_copy.is_same(os.fstat(old.fileno())) and self.reuse.link(
                    old, target, parts
                ):
                    old.close()
                    return
            except BaseException:
                old.close()
                raise
        try:
            with m.open() as src:
                if old is None:
                    self.write_new(m, target, mode, src, ())
                    return
                with old:
                    same, matched, piece = _same_bytes(src, old, m.size)
                    if same and self.reuse is not None and self.reuse.link(old, target, parts):
                        return
                    # the bytes compared so far are the old file's: copy them, then the rest
                    self.write_new(m, target, mode, src, _head(old, matched, piece))
        except CORRUPT as exc:
            raise corrupt(self.archive, exc, m.name) from exc

    def write_new(
        self, m: Member, target: Path, mode: int, src: IO[bytes], head: Iterable[bytes]
    ) -> None:
        # Straight to the descriptor (no buffered file object: its isatty and seek calls
        # cost more than the write of a small file); the mode set on the descriptor.
        fd = os.open(target, _CREATE, 0o600)
        try:
            written = 0
            for piece in itertools.chain(head, iter(lambda: src.read(READ_SIZE), b"")):
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
                written += len(piece)
            if written != m.size:
                raise corrupt(self.archive, EOFError(f"{written} of {m.size} bytes"), m.name)
            _set_mode(fd, target, mode)
        finally:
            os.close(fd)

    def link_bytecode(self) -> None:
        """Bring the bytecode of every reused source file along (see ``_Reuse``)."""
        if self.reuse is not None:
            self.reuse.link_bytecode(self.stage, self.seen)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_CREATE |= getattr(os, "O_BINARY", 0)


def _set_mode(fd: int, path: Path, mode: int) -> None:
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:  # Windows: by path (only the read-only bit means anything there)
        os.chmod(path, mode)


def _same_bytes(src: IO[bytes], old: IO[bytes], size: int) -> tuple[bool, int, bytes]:
    """Read ``src`` while it equals ``old``: (equal to the end, bytes that matched, the
    first piece that differed or b"")."""
    matched = 0
    while piece := src.read(READ_SIZE):
        if old.read(len(piece)) != piece:
            return False, matched, piece
        matched += len(piece)
    return matched == size and not old.read(1), matched, b""


def _head(old: IO[bytes], length: int, piece: bytes) -> Iterator[bytes]:
    """The first ``length`` bytes of ``old``, then ``piece``."""
    old.seek(0)
    while length > 0:
        block = old.read(min(length, READ_SIZE))
        if not block:
            raise EOFError("the file compared with changed while it was read")
        yield block
        length -= len(block)
    yield piece


class _Reuse:
    """Files of an earlier version of the same layer, deployed at the same path, that a new
    member may be instead of a new copy.

    A regular member whose path exists in ``root`` as a regular file (no link on the way)
    with the same mode and the same bytes (compared with the member's own, never by size or
    time alone) becomes a hard link to that file. Its ``__pycache__/<stem>.<tag>.pyc`` files
    come along: same inode, so the same mtime and size the bytecode records, and the same
    deployed path, so they stay valid and a compile pass finds them up to date. Nothing
    here writes into ``root``: a later writer must replace, never write through, a link.
    """

    def __init__(self, root: Path):
        self.tree = LinkFreeTree(root)
        self.root = self.tree.root
        self.folder = self.tree.folder
        self.linked: list[tuple[str, ...]] = []

    def candidate(self, parts: tuple[str, ...], size: int, mode: int) -> IO[bytes] | None:
        old = self.tree.open_file(parts)
        if old is None:
            return None
        st = os.fstat(old.fileno())
        if st.st_size != size or st.st_mode & 0o777 != mode:
            old.close()
            return None
        return old

    def link(self, old: IO[bytes], target: Path, parts: tuple[str, ...]) -> bool:
        folder = self.folder(parts[:-1])
        assert folder is not None
        try:
            os.link(os.path.join(folder, parts[-1]), target, follow_symlinks=False)
        except OSError:
            return False
        if os.lstat(target).st_ino != os.fstat(old.fileno()).st_ino:  # replaced meanwhile
            os.unlink(target)
            return False
        self.linked.append(parts)
        return True

    def link_bytecode(self, stage: Path, members: dict[tuple[str, ...], str]) -> None:
        by_stem: dict[tuple[str, ...], dict[str, list[str]]] = {}  # __pycache__ -> stem -> pycs
        for parts in self.linked:
            stem, suffix = os.path.splitext(parts[-1])
            cache = (*parts[:-1], "__pycache__")
            if suffix != ".py" or cache in members or self.folder(cache) is None:
                continue
            if cache not in by_stem:
                by_stem[cache] = {}
                with contextlib.suppress(OSError):
                    for name in os.listdir(os.path.join(self.root, *cache)):
                        if found := _PYC.fullmatch(name):
                            by_stem[cache].setdefault(found[1], []).append(name)
            for name in by_stem[cache].get(stem, []):
                self.link_one(stage, cache, name)

    def link_one(self, stage: Path, cache: tuple[str, ...], name: str) -> None:
        folder = stage.joinpath(*cache)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o755)
        source = os.path.join(self.root, *cache, name)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(source).st_mode):
                os.link(source, folder / name, follow_symlinks=False)


#: An archive may unpack to this many times its own size: Python layers compress 3-10x,
#: a decompression bomb thousands of times (66 KB of tar.zst holding 2 GB of zeros) ...
MAX_EXPANSION = 100
#: ... and a small archive to this much whatever its size ...
MIN_UNPACK_BOUND = 512 * 1024 * 1024
#: ... never leaving less than this free on the destination's file system.
FREE_SPACE_RESERVE = 128 * 1024 * 1024
#: What each member costs besides its bytes (a folder entry, an inode): a million empty
#: files are a bomb too.
MEMBER_COST = 512


class _UnpackBound:
    """How much an archive may write, checked against each member's size before it is
    written (tar and zip headers state the size, and the readers hold a member to it)."""

    def __init__(self, archive: Path, archive_size: int, dest_parent: Path) -> None:
        self.archive = archive
        self.ratio_bound = max(archive_size * MAX_EXPANSION, MIN_UNPACK_BOUND)
        self.free = shutil.disk_usage(dest_parent).free
        self.dest_parent = dest_parent
        self.total = 0

    def add(self, member: Member) -> None:
        self.total += member.size + MEMBER_COST
        if self.total > self.ratio_bound:
            raise ArchiveError(
                f"{self.archive}: refusing to unpack: its members add up to more than "
                f"{self.ratio_bound} bytes ({MAX_EXPANSION} times the archive's size, at least "
                f"{MIN_UNPACK_BOUND}), at member {member.name!r}. An archive that expands this "
                "much is a decompression bomb or damaged; do not deploy it."
            )
        if self.total > self.free - FREE_SPACE_RESERVE:
            raise ArchiveError(
                f"{self.archive}: refusing to unpack: its members need more than the "
                f"{self.free} bytes free in {self.dest_parent} (keeping {FREE_SPACE_RESERVE} "
                "free); free some space and run again."
            )


def _check_size(archive: Path, size: int | None) -> int:
    try:
        actual_size = archive.stat().st_size
    except OSError as exc:
        raise ArchiveError(f"{archive}: cannot read the archive ({exc.strerror}).") from exc
    if size is not None and actual_size != size:
        raise ArchiveError(
            f"{archive}: size mismatch: expected {size} bytes (archive_size in the metadata), "
            f"found {actual_size}. The download is incomplete or the archive was replaced."
        )
    return actual_size


class _Sha256:
    """sha256 of the bytes read so far, and how many."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.count = 0

    def update(self, data: bytes, /) -> None:
        self.hash.update(data)
        self.count += len(data)


def _check_sha256(archive: Path, sha256: str, seen: _Sha256 | None = None) -> None:
    """``seen``: the digest of the archive as the extraction read it; when it did not read
    every byte (it stopped at an error) the file is read again here."""
    if seen is not None and seen.count == archive.stat().st_size:
        actual = seen.hash.hexdigest()
    else:
        digest = hashlib.sha256()
        with archive.open("rb") as f:
            while block := f.read(READ_SIZE):
                digest.update(block)
        actual = digest.hexdigest()
    if actual != sha256.lower():
        raise ArchiveError(
            f"{archive}: sha256 mismatch: expected {sha256.lower()} (archive_hashes in the "
            f"metadata), found {actual}. The archive is damaged or was replaced."
        )


def extract_archive(
    archive_path: Path,
    dest_parent: Path,
    *,
    expected_root: str,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    replace: bool = False,
    sibling_roots: Collection[str] = (),
    reuse_from: Path | None = None,
    verified: KnownCopy | None = None,
) -> Path:
    """Safely unpack ``archive_path`` to ``dest_parent/expected_root`` and return that path.

    The size is checked before anything is unpacked, and what it unpacks to is bounded
    (``_UnpackBound``: a ratio of its size, and the free space); the sha256 of a tar archive while it
    is unpacked (the file is read once), before anything is moved into place, that of a
    zip archive before unpacking. Every member must live under ``expected_root/``;
    symlinks must stay inside the layer, or lead straight into one of the
    ``sibling_roots`` folders beside it in ``dest_parent`` (links into lower layers).
    On any failure ``dest_parent`` is left exactly as it was.

    ``reuse_from``: an earlier version of this layer, deployed at the path this one will
    be deployed at; a file with the same path, mode and bytes there is hard-linked
    instead of written, its bytecode with it (``_Reuse``). Nothing in it is changed.

    ``verified``: the file was found to have ``expected_sha256`` when it was this copy
    (``KnownCopy``: deploy hashes a local archive before it takes the target's lock, so
    a damaged one is refused before the target is touched). While it still is, before
    and after unpacking, its bytes are not hashed a second time.
    """
    check_root_name(expected_root, "Expected archive root folder")
    dest = dest_parent / expected_root
    if (dest.exists() or dest.is_symlink()) and not replace:
        raise ArchiveError(
            f"{dest}: already exists; remove it or unpack {archive_path.name} with replace."
        )
    archive_size = _check_size(archive_path, expected_size)
    known = verified if verified is not None and verified.is_same(archive_path.stat()) else None
    seen: _Sha256 | None = None
    if expected_sha256 is not None and known is None:
        if detect_format(archive_path) is ArchiveFormat.ZIP:
            _check_sha256(archive_path, expected_sha256)
        else:
            seen = _Sha256()

    def check_after() -> None:
        if known is not None and not known.is_same(archive_path.stat()):
            raise ArchiveError(
                f"{archive_path}: changed while it was unpacked; nothing was installed — "
                "deploy again once nothing writes to it"
            )
        if expected_sha256 is not None and seen is not None:
            _check_sha256(archive_path, expected_sha256, seen)

    def on_error() -> None:
        if expected_sha256 is not None:  # a damaged download says so, not "corrupt"
            _check_sha256(archive_path, expected_sha256, seen)

    return _unpack(
        archive_path,
        members(archive_path, seen),
        dest,
        archive_size,
        sibling_roots=sibling_roots,
        reuse_from=reuse_from,
        check_after=check_after,
        on_error=on_error,
    )


def extract_members(
    label: Path,
    source: Iterable[Member],
    dest_parent: Path,
    *,
    expected_root: str,
    bound_size: int,
    sibling_roots: Collection[str] = (),
    reuse_from: Path | None = None,
) -> Path:
    """Unpack members from elsewhere than one archive file (deploy's ``delta``: files
    decoded from fetched ranges or taken from the deployed layer) with exactly the checks
    ``extract_archive`` makes: names, links, duplicates, the unpack bound (as for an
    archive of ``bound_size`` bytes), staging beside the destination; ``label`` names the
    source in messages. ``dest_parent/expected_root`` must not exist yet."""
    check_root_name(expected_root, "Expected archive root folder")
    dest = dest_parent / expected_root
    if dest.exists() or dest.is_symlink():
        raise ArchiveError(f"{dest}: already exists; remove it first.")
    return _unpack(
        label, source, dest, bound_size, sibling_roots=sibling_roots, reuse_from=reuse_from
    )


def _unpack(
    label: Path,
    source: Iterable[Member],
    dest: Path,
    bound_size: int,
    *,
    sibling_roots: Collection[str],
    reuse_from: Path | None,
    check_after: Callable[[], None] = lambda: None,
    on_error: Callable[[], None] = lambda: None,
) -> Path:
    dest_parent, expected_root = dest.parent, dest.name
    created = _make_parents(dest_parent)
    scratch: Path | None = None
    try:
        scratch = Path(
            tempfile.mkdtemp(prefix=f".{expected_root}.", suffix=".unpack", dir=dest_parent)
        )
        stage = scratch / expected_root
        os.mkdir(stage, 0o755)
        extractor = _Extractor(label, stage, expected_root, sibling_roots, reuse_from)
        bound = _UnpackBound(label, bound_size, dest_parent)
        count = 0
        try:
            for member in source:
                bound.add(member)
                extractor.add(member)
                count += 1
        except ArchiveError:
            _close(source)
            on_error()
            raise
        finally:
            _close(source)  # here and now, not by the garbage collector in another thread
        check_after()
        if not count:
            raise ArchiveError(f"{label}: the archive has no members; build it again.")
        extractor.link_bytecode()
        os.chmod(stage, 0o755)
        replace_dir(stage, dest)
    except BaseException:
        if scratch is not None:
            remove_tree_quietly(scratch)
            scratch = None
        for folder in reversed(created):
            _rmdir_quietly(folder)
        raise
    finally:
        if scratch is not None:
            remove_tree_quietly(scratch)
    return dest


def _close(source: Iterable[Member]) -> None:
    """Close a members generator stopped early (its archive reader with it)."""
    close = getattr(source, "close", None)
    if close is not None:
        close()


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (outermost first) to undo on failure."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    missing.reverse()
    for path in missing:
        path.mkdir(exist_ok=True)
    return missing


def _rmdir_quietly(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
