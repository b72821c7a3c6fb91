"""Benchmark app: build an HTTP request without sending it (no network needed)."""

import httpx


def main() -> None:
    request = httpx.Request("GET", "https://pypi.org/simple/")
    print("request", request.method, request.url)


if __name__ == "__main__":
    main()
