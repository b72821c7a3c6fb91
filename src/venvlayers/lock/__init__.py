"""Locking layers: uv resolution, venvstacks' lock files and hashes, lock validity, lock diffs."""
