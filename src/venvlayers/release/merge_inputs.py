"""What merge reads from an input must stay in it, and what becomes a path must be a name.

A platform job's output is untrusted (an artifact anyone with a pull request can shape):
its layer names, install targets and archive names become file names in the merged
output, and every file merge reads must be a regular file inside that job's folder, never
a link leading elsewhere (whose target would be copied, or linked, into the output).
"""

from __future__ import annotations

import os
from pathlib import Path

from venvlayers.core.names import plain_name_problem
from venvlayers.formats.assets import archive_name_problem
from venvlayers.formats.models import LayerMetadata


def entry_problem(entry: LayerMetadata) -> str | None:
    """Why a manifest entry's names cannot become paths in the output, or None."""
    for field, value in (
        ("layer_name", entry.layer_name),
        ("install_target", entry.install_target),
    ):
        if bad := plain_name_problem(value):
            return f"{field} {value[:60]!r} is not a plain name ({bad}); refusing it"
    if entry.archive_name is not None and (bad := archive_name_problem(entry.archive_name)):
        return f"archive_name {entry.archive_name[:60]!r} of {entry.layer_name} {bad}; refusing it"
    return None


def input_file_problem(root: Path, path: Path) -> str | None:
    """Why ``path`` cannot be read as a file of the job output ``root``, or None."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        return f"{path} is a link leading out of {root}; merge reads the files themselves"
    if not os.path.isfile(real):
        return f"{path} is not a regular file"
    return None
