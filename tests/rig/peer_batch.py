"""Run venvstacks 0.8.0 on several command lines in one process: ``Peer.run_many``.

Reads a JSON list of argument lists on stdin and writes a JSON list of ``{code, out, err}``
on stdout. Runtimes come from local archives as with ``bench/peer_offline.py`` (whose
install hook it loads), so side-by-side tests pay venvstacks' start-up once, not per call.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys


def main() -> None:
    calls = json.loads(sys.stdin.read())
    offline = runpy.run_path(sys.argv[1])  # bench/peer_offline.py
    import venvstacks.stacks
    from venvstacks.cli import main as venvstacks_main

    venvstacks.stacks._pdm_python_install = offline["_install_local_runtime"]
    results = []
    for args in calls:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                venvstacks_main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    main()
