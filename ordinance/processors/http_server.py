"""An ASGI app served by uvicorn in a daemon thread beside a processor's loop (the
monitor's and `serve`'s ``--http``); ``port`` 0 picks a free one (see ``bound_port``)."""

from __future__ import annotations

import threading

import uvicorn
from starlette.applications import Starlette


class HttpServer:
    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="ordinance-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        waited = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if self.server.started:
                return
            if not self.thread.is_alive():
                break
            waited.wait(0.05)
        raise TimeoutError("the HTTP server did not start (is the address in use?)")

    @property
    def bound_port(self) -> int:
        sockets = [s for server in self.server.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:9464`` is 127.0.0.1); ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--http wants HOST:PORT, not {text!r}")
    return host or "127.0.0.1", int(port)
