"""The HTTP API served by uvicorn on a socket of its own: the bot endpoint's serving code
(``frontends/bot/server.py``: Ctrl-C and SIGTERM stop it gracefully and the process exits 0),
with the service's app, on a socket bound before serving (so the URL is known)."""
from __future__ import annotations

import threading
import time

from integration.frontends.bot.server import _server_class, bind


class ServiceServer:
    """``start()`` in a thread (tests) or ``run()`` in the foreground (``msteams serve``)."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, tls_cert: str | None = None,
                 tls_key: str | None = None):
        import uvicorn

        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.tls = bool(tls_cert)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_keep_alive=15,
                                timeout_graceful_shutdown=5, h11_max_incomplete_event_size=64 * 1024,
                                server_header=False, http="h11")
        try:
            config.load()  # a bad certificate or key fails here, not once serving
        except BaseException:
            self.sock.close()
            raise
        self.server = _server_class()(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self, timeout: float = 10.0) -> "ServiceServer":
        self._thread = threading.Thread(target=self.run, name=f"msteams-api:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP API did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "ServiceServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
