"""Run the app on a real uvicorn server: inside this process (:class:`ServerThread`) or as a
``wildfer serve`` child process (:class:`ServerProcess`), for tests, benchmarks, notebooks.

>>> with ServerThread(create_app(rec)) as srv:      # doctest: +SKIP
...     httpx.get(srv.url + "/healthz")
>>> with ServerProcess(["--threads", "2"]) as srv:  # doctest: +SKIP
...     httpx.post(srv.url + "/v1/predict", files={"file": open("photo.jpg", "rb")})

Both serve HTTP with :class:`GuardedH11Protocol`, uvicorn's h11 protocol plus a time limit
on request headers: uvicorn only times out a connection idle *after* a response, so a client
that connects and never finishes its headers (slowloris) would hold its connection open.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds a client has, from connecting or from the end of the previous response, to send a
#: request's complete headers (a browser or curl needs milliseconds).
HEADER_TIMEOUT_S = 10.0
#: Seconds an idle keep-alive connection stays open after a response (uvicorn's option).
KEEP_ALIVE_S = 5
#: Largest request head (request line and headers) in bytes; 400 beyond (h11's option).
MAX_HEAD_BYTES = 16 * 1024


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on request headers: a connection whose client
    has not sent a complete request head within ``header_timeout`` seconds (from connecting,
    or from the end of the previous response) is closed, however slowly bytes trickle in.

    The deadline is ``config.header_timeout`` when set, else :data:`HEADER_TIMEOUT_S`; pass
    the class as uvicorn's ``http`` option.
    """

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.header_timeout = float(getattr(config, "header_timeout", HEADER_TIMEOUT_S))
        self._head_timer = None
        self._head = b""  # the request head received so far (while one is awaited)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # still no complete head
            self.transport.close()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and not self._head_is_acceptable(data):
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()

    def _head_is_acceptable(self, data: bytes) -> bool:
        """Check a request head as its bytes arrive, before h11 parses it: one longer than
        :data:`MAX_HEAD_BYTES` gets 431 (h11's own limit only holds for heads that arrive in
        pieces), and one with both Content-Length and Transfer-Encoding, which may smuggle a
        second request in its body (RFC 9112 6.3), gets 400; both close the connection."""
        head = self._head + data
        end = head.find(b"\r\n\r\n")
        if (end if end >= 0 else len(head)) > MAX_HEAD_BYTES:
            self._refuse(431, "Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")
            return False
        if end < 0:
            self._head = head
            return True
        self._head = b""
        names = {line.split(b":", 1)[0].strip().lower() for line in head[:end].split(b"\r\n")[1:]}
        if b"content-length" in names and b"transfer-encoding" in names:
            self._refuse(400, "Bad Request", "both Content-Length and Transfer-Encoding")
            return False
        return True

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        """Answer ``status`` with a JSON error and close the connection, without the app."""
        body = ('{"error": "bad_request", "detail": "%s"}' % detail).encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n" % (status, reason.encode(), len(body)) + body)
        self._cancel_head_timer()
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def server_config(app, host: str, port: int, *, header_timeout: float = HEADER_TIMEOUT_S, **options):
    """A ``uvicorn.Config`` for ``app`` with :class:`GuardedH11Protocol` and the header and
    keep-alive limits above (``options`` are further uvicorn options, and override these)."""
    import uvicorn

    options = {"timeout_keep_alive": KEEP_ALIVE_S, "h11_max_incomplete_event_size": MAX_HEAD_BYTES, **options}
    config = uvicorn.Config(app, host=host, port=port, http=GuardedH11Protocol, **options)
    config.header_timeout = float(header_timeout)
    return config


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` on ``host`` in a daemon thread; ``port=0`` picks a free port.

    Startup and shutdown waits are bounded (``start_timeout`` / ``stop_timeout`` seconds);
    ``header_timeout`` and ``config`` go to :func:`server_config`.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, start_timeout: float = 60.0,
                 stop_timeout: float = 10.0, log_level: str = "warning", header_timeout: float = HEADER_TIMEOUT_S,
                 **config):
        import uvicorn

        self.config = server_config(app, host, port, header_timeout=header_timeout, log_level=log_level,
                                    lifespan="on", **config)
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


def check_port(host: str, port: int) -> None:
    """Raise :class:`~wildfer.errors.WildferError` when ``host:port`` cannot be listened on
    (another server holds it, or the address is not this machine's); port 0 always works."""
    from ..errors import WildferError

    if not port:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise WildferError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(address)
        except OSError as e:
            hint = " (another server is listening there; choose another --port)" if e.errno == errno.EADDRINUSE else ""
            raise WildferError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
