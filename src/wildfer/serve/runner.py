"""Run the app on a real uvicorn server: inside this process (:class:`ServerThread`) or as a
``wildfer serve`` child process (:class:`ServerProcess`), for tests, benchmarks, notebooks.

>>> with ServerThread(create_app(rec)) as srv:      # doctest: +SKIP
...     httpx.get(srv.url + "/healthz")
>>> with ServerProcess(["--threads", "2"]) as srv:  # doctest: +SKIP
...     httpx.post(srv.url + "/v1/predict", files={"file": open("photo.jpg", "rb")})
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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


class ServerProcess:
    """``python -m wildfer.cli serve --port <free port> [args]`` as a child process.

    :meth:`start` returns once ``/healthz`` answers 200 (bounded by ``start_timeout``); when
    the process exits first, the error carries its output. :meth:`stop` terminates it (kills
    it after ``stop_timeout``). ``pid`` is the server's process id (with ``--workers N`` its
    worker processes are its children).
    """

    def __init__(self, args: list[str] | tuple[str, ...] = (), *, host: str = "127.0.0.1", port: int | None = None,
                 env: dict | None = None, start_timeout: float = 300.0, stop_timeout: float = 15.0):
        self.host = host
        self.port = port or free_port(host)
        self.cmd = [sys.executable, "-m", "wildfer.cli", "serve", "--host", host, "--port", str(self.port), *map(str, args)]
        self.env = dict(os.environ if env is None else env)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def output(self) -> str:
        """Everything the server printed so far."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def start(self) -> "ServerProcess":
        import httpx

        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        t_end = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                out = self.output()
                self.stop()
                raise RuntimeError(f"the server exited during startup (code {self.proc.returncode}):\n{out[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > t_end:
                self.stop()
                raise TimeoutError(f"the server did not start within {self.start_timeout:g} s")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(self.stop_timeout)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
