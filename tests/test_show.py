"""`venvlayers show`: tree and JSON in C3 sys.path order, with --include selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from venvlayers.cli.commands import main

DIAMOND = Path(__file__).parent / "data" / "diamond" / "venvstacks.toml"

# The same tree the reference tool (venvstacks 0.8.0) prints for this spec (nothing is
# locked, so every layer is marked "*").
EXPECTED_TREE = """\
├── Runtimes
│   ├── *cpython-3.11
│   └── *cpython-3.12
├── Frameworks
│   ├── *framework-base
│   │   └── *cpython-3.12
│   ├── *framework-left
│   │   ├── *framework-base
│   │   └── *cpython-3.12
│   ├── *framework-right
│   │   ├── *framework-base
│   │   └── *cpython-3.12
│   └── *framework-diamond
│       ├── *framework-left
│       ├── *framework-right
│       ├── *framework-base
│       └── *cpython-3.12
└── Applications
    ├── *app-app1
    │   ├── *framework-diamond
    │   ├── *framework-left
    │   ├── *framework-right
    │   ├── *framework-base
    │   └── *cpython-3.12
    └── *app-app2
        └── *cpython-3.11
"""


def test_tree_matches_c3_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(DIAMOND)]) == 0
    out = capsys.readouterr().out
    assert out == f"{DIAMOND}\n{EXPECTED_TREE}"


def test_json_is_stable_and_ordered(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--json", str(DIAMOND)]) == 0
    first = capsys.readouterr().out
    assert main(["show", "--json", str(DIAMOND)]) == 0
    assert capsys.readouterr().out == first
    doc = json.loads(first)
    app1 = doc["applications"][0]
    assert app1["name"] == "app-app1"
    assert [d["name"] for d in app1["dependencies"]] == [
        "framework-diamond",
        "framework-left",
        "framework-right",
        "framework-base",
        "cpython-3.12",
    ]
    assert [r["name"] for r in doc["runtimes"]] == ["cpython-3.11", "cpython-3.12"]


def test_include_keeps_dependencies_and_dependents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--json", "--include", "framework-left", str(DIAMOND)]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [
        layer["name"] for key in ("runtimes", "frameworks", "applications") for layer in doc[key]
    ]
    # left itself, what it stands on and what stands on it (as venvstacks 0.8.0 shows it:
    # framework-right, which only the layers above stand on, is listed under them only)
    assert names == [
        "cpython-3.12",
        "framework-base",
        "framework-left",
        "framework-diamond",
        "app-app1",
    ]
    diamond = doc["frameworks"][-1]
    assert "framework-right" in [d["name"] for d in diamond["dependencies"]]


def test_include_by_layer_name_and_glob(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--json", "--include", "app*", str(DIAMOND)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in doc["applications"]] == ["app-app1", "app-app2"]
    assert main(["show", "--json", "--include", "app-app2", str(DIAMOND)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in doc["applications"]] == ["app-app2"]
    assert [r["name"] for r in doc["runtimes"]] == ["cpython-3.11"]
    # venvstacks matches layer names only: the spec's own "app2" matches nothing
    assert main(["show", "--json", "--include", "app2", str(DIAMOND)]) == 2
    assert "--include 'app2' matches no layer" in capsys.readouterr().err


def test_include_matching_nothing_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--include", "nope", str(DIAMOND)]) == 2
    assert "--include 'nope' matches no layer" in capsys.readouterr().err
    assert main(["show", "--allow-missing", "--include", "nope", str(DIAMOND)]) == 0
