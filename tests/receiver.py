"""A real webhook endpoint for the suite: an HTTP server in a thread that keeps every call."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from activities.notifications import DELIVERY_HEADER


class Receiver:
    """A webhook endpoint that answers 503 to its first ``fail_first`` calls."""

    def __init__(self, fail_first: int, host: str = "127.0.0.1") -> None:
        self.fail_first = fail_first
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    failing = len(receiver.calls) < receiver.fail_first
                    receiver.calls.append(
                        {
                            "path": self.path,
                            "host": self.headers.get("Host"),
                            "delivery": self.headers.get(DELIVERY_HEADER),
                            "body": body,
                            "answered": 503 if failing else 200,
                        }
                    )
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
