"""The one rule for a value that becomes a single file or folder name.

Layer names, install targets and archive names come from specs, published metadata,
manifests and API answers, and each becomes one path component: a folder in a deployment,
``env_metadata/<layer>.json`` in a merge, an archive beside its manifest. Whatever wrote
the value, it must stay one plain name inside the folder it is joined to. Spec layer
names add stricter, portable rules on top (``stack.pathrules.name_problem``); archive
names add their suffixes (``formats.assets.archive_name_problem``); platform tags have
their own grammar (``core.platforms.platform_tag_problem``).
"""

from __future__ import annotations

import unicodedata


def plain_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one plain file or folder name, or None when it can.

    No path separators (``/``, ``\\``), no drive or stream colon, not ``.`` or ``..``, no
    leading dot (hidden, and our staging names start with one), no control or invisible
    characters, no surrounding spaces.
    """
    if not name:
        return "is empty"
    if name != name.strip():
        return "has leading or trailing spaces"
    for char in name:
        if unicodedata.category(char)[0] in "CZ" and char != " ":
            return f"contains the control or invisible character {char!r}"
        if char in "/\\":
            return "contains a path separator"
        if char == ":":
            return "contains ':'"
    if name in (".", ".."):
        return f"is {name!r}"
    if name.startswith("."):
        return "starts with '.'"
    return None


__all__ = ["plain_name_problem"]
