"""Which URLs from an answer we follow, and which may see the token.

A GitHub API answer names further URLs: the next page of a list (``Link: rel="next"``),
an asset's ``url``, a release's ``upload_url``. A hostile or misconfigured server can name
any host there (or ``file:///etc/passwd``). We follow such URLs only on the API's own
origin (``GITHUB_API_URL``: api.github.com or the GitHub Enterprise Server host), plus
GitHub's uploads host for uploads, and only over http(s); so the token goes nowhere else.
"""

from __future__ import annotations

from urllib.parse import urlsplit

WEB_SCHEMES = ("https", "http")
#: github.com's API sends uploads to their own host; a GHES host serves both itself
_UPLOAD_HOSTS = {"api.github.com": "uploads.github.com"}


def scheme_problem(url: str) -> str | None:
    """Why ``url`` is not one we fetch at all (only http and https are), or None."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in WEB_SCHEMES:
        return f"is a {scheme or 'relative'}: URL; only https:// and http:// URLs are fetched"
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = None  # an invalid port matches nothing
    return scheme, (parts.hostname or "").lower(), port


def api_url_problem(url: str, api_url: str, *, upload: bool = False) -> str | None:
    """Why the token must not go to ``url`` named in an answer of ``api_url``, or None.

    Same host and port as the API (an https API never leads to http); ``upload``: GitHub's
    uploads host counts too."""
    if problem := scheme_problem(url):
        return problem
    scheme, host, port = _origin(url)
    api_scheme, api_host, api_port = _origin(api_url)
    hosts = {api_host}
    if upload and api_host in _UPLOAD_HOSTS:
        hosts.add(_UPLOAD_HOSTS[api_host])
    if host not in hosts or port != api_port or (api_scheme == "https" and scheme != "https"):
        return (
            f"is not on the API host {api_host} (GITHUB_API_URL); refusing to send the token there"
        )
    return None


__all__ = ["WEB_SCHEMES", "api_url_problem", "scheme_problem"]
