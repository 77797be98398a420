"""Run the app on a real uvicorn server inside this process (tests, benchmarks, notebooks).

>>> with ServerThread(create_app(rec)) as srv:      # doctest: +SKIP
...     httpx.get(srv.url + "/healthz")
"""

from __future__ import annotations

import threading
import time


class ServerThread:
    """uvicorn serving ``app`` on ``host`` in a daemon thread; ``port=0`` picks a free port.

    Startup and shutdown waits are bounded (``start_timeout`` / ``stop_timeout`` seconds).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, start_timeout: float = 60.0,
                 stop_timeout: float = 10.0, log_level: str = "warning", **config):
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", **config)
        self.server = uvicorn.Server(self.config)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerThread":
        self._thread = threading.Thread(target=self.server.run, name="wildfer-uvicorn", daemon=True)
        self._thread.start()
        t_end = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped during startup (see the log above)")
            if time.monotonic() > t_end:
                self.stop()
                raise TimeoutError(f"the server did not start within {self.start_timeout:g} s")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        self.port = sock.getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.stop_timeout)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(self.stop_timeout)
            self._thread = None

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
