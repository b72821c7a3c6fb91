"""What may become a path: layer names and the module folders an app ships.

Layer names are folder, file, archive and asset names on every platform; launch and
support module folders are copied into app layers. Untrusted spec content must never
decide where we write or what we ship from outside the spec's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from venvlayers.core.names import plain_name_problem

#: Layer names become folder, file and archive names on every platform (and GitHub
#: asset names): at most this long, so ``framework-<name>@<version>-<platform>-<build>``
#: plus suffixes stays far below the 255-byte file-name limit.
MAX_NAME_LENGTH = 100
_WINDOWS_FORBIDDEN = set('<>:"/\\|?*')
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul"} | {
    f"{d}{n}" for d in ("com", "lpt") for n in range(10)
}


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a layer name, or None when it can.

    venvstacks uses layer names as folder and file names without checking them; this is
    the subset that is a safe, portable single path component: no path separators, no
    ``..``, no control or invisible characters, no surrounding spaces, nothing Windows
    refuses (drive prefixes like ``C:``, ``*``, device names), a letter or digit first.
    Dotted (``cpython-3.12``) and ``@`` names stay valid.
    """
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; use at most {MAX_NAME_LENGTH}"
    for char in name:
        if char in _WINDOWS_FORBIDDEN:
            what = "a path separator" if char in "/\\" else f"{char!r}"
            return f"contains {what}, which cannot be part of a folder name"
    problem = plain_name_problem(name)  # what every name that becomes a path must pass
    if problem is not None:
        return problem
    if ".." in name:
        return "contains '..'"
    if not name[0].isalnum():
        return "must start with a letter or a digit"
    if name.endswith("."):
        return "must not end with '.'"
    if name.split(".")[0].lower() in _WINDOWS_DEVICES:
        return "is a reserved device name on Windows"
    return None


def shown(value: str, limit: int = 40) -> str:
    """A user value quoted for a message: escaped, and cut when absurdly long."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def module_link_problem(root: Path) -> str | None:
    """Why the package folder ``root`` cannot be shipped as it is, or None.

    Shipped content never follows a link out of the package: a link whose target lies
    outside ``root`` (``pkg/leak -> /etc/passwd``) would ship that target, and a link to
    a folder could loop. Links to files inside the package are copied as those files.
    """
    top = root.resolve()
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder, name)
            if not path.is_symlink():
                continue
            relative = path.relative_to(root).as_posix()
            target = path.resolve()
            if not target.is_relative_to(top):
                return (
                    f"{relative!r} is a link to {os.readlink(path)!r}, outside the package;"
                    " replace the link with the file itself"
                )
            if target.is_dir():
                return f"{relative!r} is a link to a folder; replace it with the folder itself"
            if not target.exists():
                return f"{relative!r} is a broken link; remove it"
    return None
