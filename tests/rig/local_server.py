"""An HTTP server on 127.0.0.1 answering from a background thread (for the test doubles)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHTTPServer:
    """Serves ``handler`` on a free local port until stop()."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        # TCP_NODELAY, as real servers set it: a handler writes its headers and its body
        # apart, and with Nagle's algorithm a keep-alive client's delayed ACK (40 ms on
        # Linux) held every small body back; index lookups then measured the rig, not uv
        nodelay = type(handler.__name__, (handler,), {"disable_nagle_algorithm": True})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), nodelay)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        # a short poll interval keeps stop() (and so each fixture's teardown) quick
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
