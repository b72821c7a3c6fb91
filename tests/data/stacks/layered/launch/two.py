"""Launch module of app-two. It prints when imported (the build's import check must cope)."""

import json
import sys

import alpha
import epsilon

json.dump(
    {"alpha": alpha.__version__, "files": {"alpha": alpha.__file__, "epsilon": epsilon.__file__}},
    sys.stdout,
)
