"""Infrastructure every stage uses: errors, files, processes, uv, reporting, run locks, platforms."""
