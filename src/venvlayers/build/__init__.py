"""Building layer environments for this platform: runtimes, venvs, the post-build check."""
