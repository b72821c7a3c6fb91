#!/usr/bin/env bash
# The main job on the bundled example: lock, build and publish examples/basic, then deploy
# the published archives into a fresh folder and run the app from there.
#
# Everything the run writes goes to _example-run/ at the top of the repository (git-ignored,
# read by no test): the example's folder is left as it was.
#
# Runtimes normally come from python-build-standalone on GitHub. When GitHub cannot be
# reached and no runtime mirror is configured (UV_PYTHON_DOWNLOADS_JSON_URL), this script
# makes a local mirror from a local CPython 3.12.1 (as the test suite does), so it also
# runs on air-gapped machines.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet uv
    # pip may put the uv command where PATH does not look (a pyenv Python without a rehash,
    # ~/.local/bin): the module runs it all the same
    command -v uv >/dev/null 2>&1 || uv() { python3 -m uv "$@"; }
fi
uv sync --quiet

example=examples/basic
work=$PWD/_example-run
out=$work/out
rm -rf "$work"
mkdir -p "$work"
if [ -z "${UV_PYTHON_DOWNLOADS_JSON_URL:-}" ] && ! curl -fsS -m 5 -o /dev/null https://github.com 2>/dev/null; then
    echo "GitHub unreachable: making a local runtime mirror from a local CPython 3.12.1"
    UV_PYTHON_DOWNLOADS_JSON_URL=$(uv run python - <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from rig.runtime import local_cpython_prefix, make_runtime_mirror
prefix = local_cpython_prefix("3.12.1")
if prefix is None:
    sys.exit("no local CPython 3.12.1 found (set VENVLAYERS_TEST_CPYTHON_3_12_1 to its prefix)")
mirror = make_runtime_mirror([(prefix, "3.12.1")], Path("_example-run/mirror").absolute())
print(mirror.downloads_json.absolute().as_uri())
PY
)
    export UV_PYTHON_DOWNLOADS_JSON_URL
fi

# the example's committed locks are used as they are (a stale one fails: run `venvlayers lock`)
uv run venvlayers build --publish --tag-outputs --build-dir "$work/build" --output-dir "$out" \
    "$example/venvstacks.toml"
uv run venvlayers deploy --from "$out" --target "$out/deployed" --run hello
