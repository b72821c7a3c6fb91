"""GitHub Actions expressions (``${{ }}``), evaluated the way the runner does.

Covers what venvlayers' workflows and the actions they call use:
- literals: ``'single-quoted'`` strings (``''`` escapes a quote), numbers, true/false/null;
- contexts and property paths: ``inputs.x``, ``steps.<id>.outputs.<name>``,
  ``matrix.runner``, ``needs.<job>.result``, ``env['X']``, ``needs.*.result`` (an object
  filter gives a list); a missing property is null;
- operators ``!``, ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=`` (strings compare
  case-insensitively; mixed types compare as numbers), ``&&`` and ``||`` (they return an
  operand), parentheses;
- functions: the status functions ``success()``, ``failure()``, ``always()``,
  ``cancelled()``; ``fromJSON``, ``toJSON``, ``format``, ``contains``, ``startsWith``,
  ``endsWith``, ``join`` and ``hashFiles``.
Anything else raises ``ExpressionError`` rather than guessing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ExpressionError(ValueError):
    """An expression outside the supported language (or malformed)."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?))"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[!<>().,\[\]*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"cannot parse expression at {text[pos:]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def to_number(value: Any) -> float:
    """GitHub's coercion for comparisons between different types."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def to_string(value: Any) -> str:
    """How a value reads inside a string (``format``, ``${{ }}`` in text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Mapping | list):
        return to_json(value)
    return str(value)


def to_json(value: Any) -> str:
    def plain(item: Any) -> Any:
        if isinstance(item, float) and item.is_integer():
            return int(item)
        if isinstance(item, Mapping):
            return {k: plain(v) for k, v in item.items()}
        if isinstance(item, list):
            return [plain(v) for v in item]
        return item

    return json.dumps(plain(value), indent=2)


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, Mapping | list):
        return True
    return value not in (None, False, 0, "")


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if isinstance(left, Mapping | list) or isinstance(right, Mapping | list):
        return left is right
    if type(left) is type(right):
        return bool(left == right)
    return to_number(left) == to_number(right)


def _less(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() < right.casefold()
    return to_number(left) < to_number(right)


@dataclass
class Scope:
    """What an expression can see: contexts by name, the job status, the workspace."""

    contexts: Mapping[str, Any]
    status: str = "success"  # success, failure or cancelled: how the job (or action) goes
    workspace: Path | None = None
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)


class _Filtered(list[Any]):
    """The result of ``.*``: following properties apply to each element."""


class _Parser:
    def __init__(self, text: str, scope: Scope) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.scope = scope

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ExpressionError(f"unexpected end of expression {self.text!r}")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, found {token[1]!r} in {self.text!r}")
        self.pos += 1
        return token

    def parse(self) -> Any:
        value = self._or()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self._peek()!r} in {self.text!r}")
        return list(value) if isinstance(value, _Filtered) else value

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._equality()
        while self._peek() == "&&":
            self._take()
            right = self._equality()
            value = right if truthy(value) else value
        return value

    def _equality(self) -> Any:
        value = self._comparison()
        while self._peek() in ("==", "!="):
            op = self._take()[1]
            equal = _equal(value, self._comparison())
            value = equal if op == "==" else not equal
        return value

    def _comparison(self) -> Any:
        value = self._unary()
        while self._peek() in ("<", "<=", ">", ">="):
            op = self._take()[1]
            right = self._unary()
            if op == "<":
                value = _less(value, right)
            elif op == ">":
                value = _less(right, value)
            elif op == "<=":
                value = not _less(right, value)
            else:
                value = not _less(value, right)
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._take(")")
            return self._path(value)
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return to_number(text)
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r} in {self.text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            return self._path(self._call(text))
        if text not in self.scope.contexts:
            raise ExpressionError(f"unknown context {text!r} in {self.text!r}")
        return self._path(self.scope.contexts[text])

    def _call(self, name: str) -> Any:
        self._take("(")
        args: list[Any] = []
        while self._peek() != ")":
            if args:
                self._take(",")
            value = self._or()
            args.append(list(value) if isinstance(value, _Filtered) else value)
        self._take(")")
        return call_function(name, args, self.scope)

    def _path(self, value: Any) -> Any:
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                key: Any = self._take()[1]
            else:
                key = self._or()
                self._take("]")
            if key == "*":
                if isinstance(value, Mapping):
                    value = _Filtered(value.values())
                else:
                    value = _Filtered(value if isinstance(value, list) else [])
                continue
            value = _index(value, key)
        return value


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, _Filtered):
        return _Filtered(_index(item, key) for item in value)
    if isinstance(value, Mapping):
        for name, item in value.items():
            if isinstance(name, str) and isinstance(key, str) and name.casefold() == key.casefold():
                return item
        return None
    if isinstance(value, list) and not isinstance(key, str):
        index = int(to_number(key))
        return value[index] if 0 <= index < len(value) else None
    return None


def _format(template: str, *args: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        index = int(match.group(1))
        if index >= len(args):
            raise ExpressionError(f"format({template!r}): no argument {index}")
        return to_string(args[index])

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", replace, template)


def _contains(haystack: Any, needle: Any) -> bool:
    if isinstance(haystack, list):
        return any(_equal(item, needle) for item in haystack)
    return to_string(needle).casefold() in to_string(haystack).casefold()


def _join(items: Any, separator: Any = ",") -> str:
    if isinstance(items, list):
        return to_string(separator).join(to_string(item) for item in items)
    return to_string(items)


def hash_files(workspace: Path, patterns: list[str]) -> str:
    """sha256 over the sha256 of each matching file (sorted paths), like the runner; '' if none."""
    matched: set[Path] = set()
    for pattern in patterns:
        negate = pattern.startswith("!")
        found = {p for p in workspace.glob(pattern.lstrip("!")) if p.is_file()}
        matched = matched - found if negate else matched | found
    if not matched:
        return ""
    outer = hashlib.sha256()
    for path in sorted(matched):
        outer.update(hashlib.sha256(path.read_bytes()).digest())
    return outer.hexdigest()


def call_function(name: str, args: list[Any], scope: Scope) -> Any:
    lower = name.lower()
    status = scope.status
    simple: dict[str, Callable[[], Any]] = {
        "success": lambda: status == "success",
        "failure": lambda: status == "failure",
        "always": lambda: True,
        "cancelled": lambda: status == "cancelled",
    }
    if lower in simple:
        if args:
            raise ExpressionError(f"{name}() takes no arguments")
        return simple[lower]()
    if lower == "fromjson":
        try:
            value = json.loads(to_string(args[0]))
        except ValueError as exc:
            raise ExpressionError(f"fromJSON: {exc}") from None
        return _numbers_as_floats(value)
    if lower == "tojson":
        return to_json(args[0])
    if lower == "format":
        return _format(to_string(args[0]), *args[1:])
    if lower == "contains":
        return _contains(args[0], args[1])
    if lower == "startswith":
        return to_string(args[0]).casefold().startswith(to_string(args[1]).casefold())
    if lower == "endswith":
        return to_string(args[0]).casefold().endswith(to_string(args[1]).casefold())
    if lower == "join":
        return _join(*args)
    if lower == "hashfiles":
        if scope.workspace is None:
            raise ExpressionError("hashFiles() needs a workspace")
        return hash_files(scope.workspace, [to_string(a) for a in args])
    if lower in scope.functions:
        return scope.functions[lower](*args)
    raise ExpressionError(f"function {name}() is not supported")


def _numbers_as_floats(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    return {k: _numbers_as_floats(v) for k, v in value.items()}


def evaluate(expression: str, scope: Scope | Mapping[str, Any], status: str = "success") -> Any:
    """Value of one expression (without the ``${{ }}``)."""
    if not isinstance(scope, Scope):
        scope = Scope(scope, status)
    return _Parser(expression, scope).parse()


TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def interpolate(text: Any, scope: Scope | Mapping[str, Any]) -> str:
    """Replace each ``${{ expr }}`` in ``text`` by its string value."""
    return TEMPLATE.sub(lambda m: to_string(evaluate(m.group(1), scope)), to_string(text))


def value_of(text: Any, scope: Scope) -> Any:
    """A YAML value with expressions: a lone ``${{ x }}`` keeps its type (lists from fromJSON)."""
    if isinstance(text, str):
        whole = TEMPLATE.fullmatch(text.strip())
        if whole:
            return evaluate(whole.group(1), scope)
        return interpolate(text, scope) if "${{" in text else text
    if isinstance(text, list):
        return [value_of(item, scope) for item in text]
    if isinstance(text, Mapping):
        return {key: value_of(item, scope) for key, item in text.items()}
    return text


_STATUS_CALL = re.compile(r"\b(success|failure|always|cancelled)\s*\(", re.IGNORECASE)


def condition(text: Any, scope: Scope | Mapping[str, Any], status: str = "success") -> bool:
    """An ``if:``: ``${{ }}`` optional; without a status function it means ``success() && (...)``."""
    if not isinstance(scope, Scope):
        scope = Scope(scope, status)
    if text is None or text == "":
        return scope.status == "success"
    if isinstance(text, bool):
        return text and scope.status == "success"
    body = str(text).strip()
    whole = TEMPLATE.fullmatch(body)
    body = whole.group(1) if whole else body
    if not _STATUS_CALL.search(body):
        body = f"success() && ({body})"
    return truthy(evaluate(body, scope))
