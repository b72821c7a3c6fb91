"""The one markdown escaper for what we put in PR comments, step summaries and release notes.

Names and messages there come from specs, lock files, metadata and API answers. Rendered
raw, ``<img src=…>`` loads an image, ``@octocat`` pings someone, ``[x](javascript:…)``
adds a link, a backtick ends a code span and ``|`` or a newline breaks a table. Every
such value goes through ``code`` (shown as code: nothing in it is markup, no mention, no
link) or ``text`` (prose: markup characters escaped, mentions broken).
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n|\u2028|\u2029|\x85")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# CommonMark's backslash escapes, for what starts markup mid-line: code, links and images
# (``[``), HTML and autolinks (``<``), entities, table cells; emphasis marks only where
# they can open or close emphasis (``lock_version`` stays as it is)
_MARKUP = re.compile(r"([\\`\[\]<>|&])|(?<![A-Za-z0-9])([*_~])|([*_~])(?![A-Za-z0-9])")
_MENTION = re.compile(r"@(?=\w)")
_BACKTICKS = re.compile(r"`+")


def _one_line(value: str) -> str:
    flat = _LINE_BREAK.sub(" ", value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", flat)


def code(value: str) -> str:
    """``value`` as an inline code span that shows it literally, table-safe.

    The fence is one backtick longer than any run inside (padded with spaces when the
    value starts or ends with one); ``|`` is escaped, as GitHub's tables need even in a
    code span; line breaks become spaces."""
    flat = _one_line(value).replace("|", "\\|")
    longest = max((len(run) for run in _BACKTICKS.findall(flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def text(value: str) -> str:
    """``value`` as plain text on one line: markup characters escaped, ``@name`` not a mention
    (a zero-width space after the ``@``), table-safe."""
    escaped = _MARKUP.sub(lambda m: "\\" + m.group(), _one_line(value))
    return _MENTION.sub("@\u200b", escaped)


_PLAIN_URL = re.compile(r"https?://[^\s<>`\\\x00-\x1f\x7f]+")


def link(url: str) -> str:
    """A plain http(s) URL as an autolink (``<url>``); anything else shown as code."""
    return f"<{url}>" if _PLAIN_URL.fullmatch(url) else code(url)


def fence(body: str) -> str:
    """``body`` as a fenced code block that nothing in it can close."""
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    marks = "`" * max(3, longest + 1)
    return f"{marks}\n{body.rstrip()}\n{marks}\n"


__all__ = ["code", "fence", "link", "text"]
