"""A tiny healthchecks stand-in on 127.0.0.1, shared by the daemon's tests; it also takes the
chat webhook's POSTs (an incoming-webhook receiver)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PingServer:
    """A tiny healthchecks stand-in on 127.0.0.1: records request paths; `/slow…` stalls."""

    def __init__(self) -> None:
        paths: list[str] = []
        self.paths = paths
        lock = threading.Lock()
        self.posts: list[tuple[str, Any]] = []  # (path, JSON body) of each POST answered 200
        self.failing_posts = 0  # the next this many POSTs are answered 503
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 200
                with lock:
                    if server.failing_posts > 0:
                        server.failing_posts -= 1
                        status = 503
                    else:
                        server.posts.append((self.path, json.loads(body or b"null")))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self) -> None:
                paths.append(self.path)
                if self.path.startswith("/slow"):
                    time.sleep(0.3)
                body = b"OK"
                with contextlib.suppress(OSError):  # a client that timed out has gone
                    self.send_response(404 if self.path.startswith("/missing") else 200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
