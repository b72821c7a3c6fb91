"""Command line: argument parsing only; each subcommand calls one stage function."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    return 0
