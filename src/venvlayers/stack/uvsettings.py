"""What uv accepts in ``[tool.uv]`` / ``venvstacks.uv.toml``, checked before uv ever runs.

``SETTINGS`` is the top-level key set of uv's settings schema (``uv.toml`` plus the
project-only ``[tool.uv]`` keys) for the uv versions venvlayers supports (0.9 to 0.13):
an unknown key is a typo, reported with a did-you-mean instead of being dropped.

Credentials never belong in a spec: uv reads them from ``UV_INDEX_<NAME>_USERNAME`` /
``UV_INDEX_<NAME>_PASSWORD``, so a URL with a user or password in it is refused (its
credentials are never repeated in the message).

uv reports a bad value at a line of the ``uv.toml``/``pyproject.toml`` venvlayers
generated; ``setting_at`` maps that line back to the setting, so the error can name the
spec's field instead of a generated file.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SETTINGS = frozenset(
    {
        "add-bounds",
        "allow-insecure-host",
        "audit",
        "build-backend",
        "build-constraint-dependencies",
        "cache-dir",
        "cache-keys",
        "check-url",
        "compile-bytecode",
        "concurrent-builds",
        "concurrent-downloads",
        "concurrent-installs",
        "config-settings",
        "config-settings-package",
        "conflicts",
        "constraint-dependencies",
        "default-groups",
        "dependency-groups",
        "dependency-metadata",
        "dev-dependencies",
        "environments",
        "exclude-dependencies",
        "exclude-newer",
        "exclude-newer-package",
        "extra-build-dependencies",
        "extra-build-variables",
        "extra-index-url",
        "find-links",
        "fork-strategy",
        "graalpy-install-mirror",
        "http-proxy",
        "https-proxy",
        "index",
        "index-strategy",
        "index-url",
        "keyring-provider",
        "link-mode",
        "managed",
        "minimum-libc-version",
        "native-tls",
        "no-binary",
        "no-binary-package",
        "no-build",
        "no-build-isolation",
        "no-build-isolation-package",
        "no-build-package",
        "no-cache",
        "no-index",
        "no-proxy",
        "no-sources",
        "no-sources-package",
        "offline",
        "override-dependencies",
        "package",
        "pip",
        "prerelease",
        "prerelease-package",
        "preview",
        "preview-features",
        "publish-url",
        "pypy-install-mirror",
        "pyodide-install-mirror",
        "python-downloads",
        "python-downloads-json-url",
        "python-install-mirror",
        "python-preference",
        "reinstall",
        "reinstall-package",
        "require-build-hashes",
        "required-environments",
        "required-version",
        "resolution",
        "sources",
        "system-certs",
        "torch-backend",
        "trusted-publishing",
        "upgrade",
        "upgrade-package",
        "workspace",
    }
)

_URL_SETTINGS = ("index-url", "extra-index-url", "find-links")


def env_name(index_name: str) -> str:
    """uv's environment-variable form of an index name: upper case, others as ``_``."""
    return re.sub(r"[^A-Z0-9]", "_", index_name.upper())


def redact(url: str) -> str:
    """``url`` with any user and password replaced by ``***``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def has_credentials(url: str) -> bool:
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


def credential_problems(config: dict[str, object]) -> list[str]:
    """A message for each URL with inline credentials in the uv settings ``config``."""
    problems: list[str] = []
    indexes = config.get("index", [])
    for index in indexes if isinstance(indexes, list) else []:
        if not isinstance(index, dict):
            continue
        url = index.get("url")
        if isinstance(url, str) and has_credentials(url):
            name = str(index.get("name", "NAME"))
            problems.append(
                f"uv index '{name}' has credentials in its url ({redact(url)}); remove them "
                f"and set UV_INDEX_{env_name(name)}_USERNAME and "
                f"UV_INDEX_{env_name(name)}_PASSWORD in the environment instead"
            )
    for scope, table in (("", config), ("pip.", config.get("pip"))):
        if not isinstance(table, dict):
            continue
        for key in _URL_SETTINGS:
            value = table.get(key)
            urls = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            for url in urls:
                if isinstance(url, str) and has_credentials(url):
                    problems.append(
                        f"uv setting '{scope}{key}' has credentials in its url ({redact(url)});"
                        " declare the index as a named [[tool.uv.index]] without them and set"
                        " UV_INDEX_<NAME>_USERNAME and UV_INDEX_<NAME>_PASSWORD instead"
                    )
    return problems


_PARSE_FAILURE_RE = re.compile(r"Failed to parse:? `?([^`\s]+?)`?\s.*?line (\d+), column (\d+)")
_KEY_RE = re.compile(r"""^\s*(?:\[+\s*)?("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)""")


def setting_at(uv_message: str, generated: dict[str, str]) -> str | None:
    """The setting a uv parse failure points at, if it is in one of the ``generated`` files.

    ``generated`` maps file names (``uv.toml``, ``pyproject.toml``) to their text.
    """
    match = _PARSE_FAILURE_RE.search(uv_message)
    if not match:
        return None
    name = match.group(1).replace("\\", "/").rsplit("/", 1)[-1]
    text = generated.get(name)
    if text is None:
        return None
    lines = text.splitlines()
    number = int(match.group(2))
    # a value spanning several lines is reported at one of them: walk up to its key
    for line in reversed(lines[:number]):
        key = _KEY_RE.match(line)
        if key and "=" in line and not line.lstrip().startswith(("#", "]", "}")):
            found = key.group(1).strip("\"'")
            return found.split(".")[-1]
        if line.lstrip().startswith("["):
            header = line.strip().strip("[]").strip()
            return header.split(".")[-1]
    return None


def parse_message(uv_message: str) -> str:
    """The last line of a uv parse failure, which says what was wrong with the value."""
    tail = uv_message.rsplit("^", 1)[-1].strip(" |")
    return " ".join(tail.split()) or uv_message
