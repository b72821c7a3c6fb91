"""``strategy.matrix`` expanded as GitHub does: the product of the lists, less ``exclude``,
with ``include`` entries extending matching combinations or added as their own."""

from __future__ import annotations

import itertools
from typing import Any


def expand(matrix: Any) -> list[dict[str, Any]]:
    if matrix is None:
        return [{}]
    if not isinstance(matrix, dict):
        raise ValueError(f"strategy.matrix must be a mapping, got {matrix!r}")
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"strategy.matrix.{key} must be a non-empty list, got {values!r}")
    keys = list(axes)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]
    if not keys:
        combos = []
    for rule in matrix.get("exclude") or []:
        combos = [c for c in combos if not all(c.get(k) == v for k, v in rule.items())]
    originals = [dict(c) for c in combos]
    for entry in matrix.get("include") or []:
        extended = False
        for combo, original in zip(combos, originals, strict=True):
            if all(original.get(k, v) == v for k, v in entry.items() if k in original):
                combo.update({k: v for k, v in entry.items() if k not in original})
                extended = True
        if not extended:
            combos.append(dict(entry))
    if not combos:
        raise ValueError("strategy.matrix expands to no job")
    return combos
