"""Reproducible, parallel archive writing and safe extraction (the only package that packs/unpacks).

Writing: the same tree gives the same bytes on every run, from any folder, with any thread
count. Entries are sorted by path, owners are root with empty names, modes are normalized
and every timestamp is the caller's ``mtime``. Compression uses every core while the result
stays a standard archive:

- ``tar.xz``: the tar stream is cut into fixed-size chunks, each compressed as its own xz
  stream (concatenated xz streams are a valid ``.xz`` file for xz, GNU tar and Python);
- ``tar.zst``: one zstd frame written by zstd's own worker threads (its output does not
  depend on the worker count as long as there is at least one worker);
- ``zip``: files are deflated in parallel (big files in chunks, pigz style) and written in
  sorted order.

Extraction validates every member itself (it does not rely on tarfile's filters), unpacks
into a temporary folder beside the destination and renames it into place only when
complete, so a refused or broken archive leaves the destination untouched.

Nothing is imported here, so a reader (deploy) never loads the writers. Modules:
``formats`` (names, suffixes, detection), ``tuning`` (compression settings),
``scan`` (the source tree and what writers share), ``tar`` and ``zip`` (the writers),
``write`` (``write_archive``), ``read`` (members of any format), ``extract`` (safe unpacking).
"""
