"""The post-build check, run by a freshly built layer's own Python (``python -I <this file>``).

Standard input: JSON ``[required, optional, mode, extensions]``. Required names must be
found (not imported: importing an app's dependency is the app's business). Optional ones
are found (mode ``"find"``) or imported (mode ``"import"``); extension module files are
``dlopen``'ed lazily and locally, which loads the shared libraries they link but runs no
module code. Each verdict is a line ``MARKER <kind> <JSON list of problems>``, on a line
of its own: imported code may print without a newline.

Standard library only, any Python 3 the layer may run: this file is not imported into
the layer's interpreter from venvlayers, it is run by path.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys

MARKER = "venvlayers-import-check: "


def _verdict(kind: str, problems: list[str]) -> None:
    print(f"\n{MARKER}{kind} {json.dumps(problems)}", flush=True)


def _missing(required: list[str]) -> list[str]:
    missing = []
    for name in required:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(f"{name} (not installed)")
        except BaseException as exc:  # a broken package raises anything while being found
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    return missing


def _failed(optional: list[str], mode: str, extensions: list[str]) -> list[str]:
    failed = []
    for name in optional:
        try:
            if mode == "import":
                importlib.import_module(name)
            elif importlib.util.find_spec(name) is None:
                failed.append(f"{name} (not found)")
        except BaseException as exc:  # import-time code may raise anything, SystemExit too
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    try:
        import ctypes
    except ImportError:  # a runtime built without ctypes: nothing to load with
        return failed
    for path in extensions:
        try:
            ctypes.CDLL(path, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        except OSError as exc:
            failed.append(f"{os.path.basename(path)} (cannot load: {exc})")
    return failed


def main() -> None:
    required, optional, mode, extensions = json.load(sys.stdin)
    _verdict("required", _missing(required))
    _verdict("optional", _failed(optional, mode, extensions))


if __name__ == "__main__":
    main()
