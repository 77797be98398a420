"""wildfer over HTTP: a FastAPI app around one :class:`~wildfer.wild.Recognizer`.

Endpoints
---------
``POST /v1/predict``   a photo (multipart field ``file``, or the raw body with an ``image/*``
                       content type) -> faces with box, landmarks, probabilities, label; the
                       image size; timings in milliseconds.
``POST /v1/explain``   same input -> a PNG saliency overlay, or JSON with ``?format=json``;
                       ``?method=gradcam|vanilla|smoothgrad|ig|occlusion``.
``POST /v1/live``      one camera frame (the page's live mode) -> faces, answered fast; per
                       client one frame at a time, at most 15 a second (:mod:`.live`).
``GET /v1/models``     the model (name, arch, classes), detector, explain methods, limits.
``GET /healthz``       liveness.
``GET /``              the web page (every asset served from this package: no CDN); ``HEAD``
                       answers like ``GET`` without the body.
``GET /docs``          an offline API reference rendered from ``/openapi.json`` (FastAPI's
                       Swagger page loads its scripts from a CDN, so it is switched off).

Safety: uploads are capped (413, on ``Content-Length`` and while reading), typed (415) and
decoded in memory off the event loop (422 when they are not a decodable image; 413 over the
pixel limit, the decompression-bomb guard; 400 for a multipart form of more than a few
parts); nothing the client sends is written to disk and no client-given path or file name is
ever used. A decoded photo over ``work_pixels`` (``explain_pixels`` for saliency maps) is
downscaled before detection, saliency and drawing, so no request costs more than a photo of
that size (boxes are mapped back to the photo's pixels). Each endpoint has a cap on requests
in progress (503 with ``Retry-After`` beyond), inference runs on worker threads under a
per-request time limit (504) with a bounded queue (503), and work whose client has gone (time
limit, closed connection) is dropped, or stopped at the network's next forward pass when it
runs. Requests whose ``Host`` header names
another host are refused (400: a page using DNS rebinding cannot read the API); CORS is off
unless origins are given. Slow clients are cut off by :mod:`wildfer.serve.runner`'s protocol
(header and keep-alive timeouts).

Speed: a server built here loads its classifier on onnxruntime when it can (about half the
CPU time of torch per face here; the torch network stays for saliency maps), decodes JPEGs
with OpenCV, detects with libfacedetection directly, and runs ``threads`` inference threads
that share one copy of the model (see :mod:`wildfer.serve.worker`).

This module builds the app (limits, lifespan, middleware); the handlers are the router of
:mod:`wildfer.serve.routes`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request

from .. import __version__
from ..errors import ModelError
from .config import SERVER_EXPLAIN_PIXELS, SERVER_MAX_PIXELS, SERVER_WORK_PIXELS, ServeConfig  # noqa: F401
from .live import LiveGate, live_router
from .routes import Limits, Slots, detector_name, error_response, model_name, router
from .worker import InferenceWorker

log = logging.getLogger("wildfer.serve")

#: Host names a server answers to besides those it is given (``allowed_hosts``).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class SecurityHeaders:
    """Pure ASGI middleware adding ``nosniff`` and ``no-referrer`` to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _host_name(value: str) -> str:
    """``'Example.com:8000'`` -> ``'example.com'``; ``'[::1]:8000'`` -> ``'::1'``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def _ip_version(name: str) -> int:
    try:
        return ipaddress.ip_address(name).version
    except ValueError:
        return 0


class HostCheck:
    """Pure ASGI middleware refusing (400) a request whose ``Host`` is not one of ``allowed``.

    A page on ``evil.example`` whose name the attacker re-points at 127.0.0.1 (DNS rebinding)
    reaches this server as same-origin, but its requests carry ``Host: evil.example``. Entries
    are names or addresses (``localhost``, ``127.0.0.1``, ``::1``, ``faces.lan``); ``0.0.0.0``
    admits any IPv4 address and ``::`` any address (a server bound to every interface answers
    to each of its addresses, and an address is not a name anyone can re-point); ``*`` admits
    everything. A request without ``Host`` (HTTP/1.0; no browser sends one) passes.
    """

    def __init__(self, app, allowed):
        self.app = app
        self.names = {_host_name(h) for h in allowed}
        self.any = "*" in self.names
        self.ip_versions = {4, 6} if "::" in self.names else {4} if "0.0.0.0" in self.names else set()

    def allows(self, host: str) -> bool:
        name = _host_name(host)
        return self.any or name in self.names or (bool(self.ip_versions) and _ip_version(name) in self.ip_versions)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.any:
            return await self.app(scope, receive, send)
        host = next((v for k, v in scope.get("headers", ()) if k == b"host"), None)
        if host is None or self.allows(host.decode("latin-1")):
            return await self.app(scope, receive, send)
        shown = host.decode("latin-1")[:60]
        await error_response(400, f"host {shown!r} is not served here (start the server with --allowed-host NAME to "
                             f"add a name)", "bad_host")(scope, receive, send)


BACKENDS = ("auto", "onnx", "torch", "int8")


def load_recognizer(model: str | None = None, detector: str = "yunet", backend: str = "auto",
                    compute_threads: int | None = 1, device: str = "auto", unsure_below: float = 0.0):
    """The server's :class:`~wildfer.wild.Recognizer`: ``model`` with its classifier on
    onnxruntime (``backend="onnx"``), torch (``"torch"``), its int8 graph on the CPU
    (``"int8"``), or (``"auto"``) the model's own default (:func:`~wildfer.models.loader.default_backend`:
    a built-in's float graphs, or the int8 ones its metadata names, for all members or some), else onnxruntime
    when it can be exported and loaded here, torch otherwise. ``compute_threads`` is the
    onnxruntime intra-op thread count (None: its default).

    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; checked before the model loads): with
    ``backend="auto"`` a GPU only torch can use is chosen over onnxruntime on the CPU.
    ``unsure_below``: the recognizer's threshold for the ``unsure`` flag."""
    from ..models.loader import MIXED, PIPELINE_MODEL, default_backend, load_model, resolve_device, switch_backend
    from ..wild import Recognizer

    model = PIPELINE_MODEL if model is None else model

    def made(clf):
        return Recognizer(model=clf, detector=detector, unsure_below=unsure_below)

    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    own = default_backend(model)
    if backend == "auto" and own in ("int8", MIXED) and str(device).strip().lower() in ("auto", "cpu"):
        backend = own  # the model's own choice (int8 graphs, or some members on them), unless a GPU was asked for by name
    if backend in ("int8", MIXED):
        resolve_device(device, backend)  # a GPU asked for is an error
        return made(load_model(model, backend="int8" if backend == "int8" else "auto", device="cpu",
                               threads=compute_threads))
    placed: dict[str, str] = {}  # backend -> the device it would run on
    refusal: ModelError | None = None
    for b in ("onnx", "torch") if backend == "auto" else (backend,):
        try:
            placed[b] = resolve_device(device, b)
        except ModelError as e:
            refusal = e
    if not placed:
        raise refusal
    use_onnx = "onnx" in placed and (backend == "onnx" or placed["onnx"] != "cpu" or placed.get("torch") in (None, "cpu"))
    if not use_onnx:
        return made(load_model(model, device=placed["torch"], backend="torch"))
    if own != "torch":  # a built-in: its float graphs
        return made(load_model(model, backend="onnx", threads=compute_threads, device=placed["onnx"]))
    clf = load_model(model, backend="torch")  # a checkpoint: exported to onnxruntime here
    try:
        clf = switch_backend(clf, "onnx", threads=compute_threads, device=placed["onnx"])
    except Exception as e:  # noqa: BLE001 - no onnxruntime, or a model that does not export
        if backend == "onnx" or "torch" not in placed:
            raise ModelError(f"model {model!r} cannot run on onnxruntime here ({str(e)[:150]})") from None
        log.info("onnxruntime unavailable for %s (%s); classifying with torch", model, e)
        clf = clf.to(placed["torch"])
    return made(clf)


#: The API's description on ``/openapi.json`` and the ``/docs`` page.
DESCRIPTION = ("Facial expression recognition on photos: detect, align and classify every face; "
               "saliency maps of what the model looks at. Send a photo as the multipart field `file` "
               "(`curl -F file=@photo.jpg http://127.0.0.1:8000/v1/predict`) or as the raw body with an "
               "`image/*` content type.")


@dataclass(frozen=True)
class Startup:
    """What the app's lifespan loads and starts (see ``create_app``'s parameters)."""

    model: str | None
    detector: str
    backend: str
    device: str
    torch_threads: int | None
    threads: int | None
    decode_threads: int
    unsure_below: float = 0.0


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Load the model (unless the app was given one), start the inference and decode threads
    on ``app.state``, and stop them at shutdown."""
    start: Startup = app.state.startup
    limits: Limits = app.state.limits
    if start.torch_threads:
        import torch

        torch.set_num_threads(int(start.torch_threads))
    rec = app.state.recognizer
    if rec is None:
        rec = load_recognizer(start.model, start.detector, start.backend, compute_threads=start.torch_threads or 1,
                              device=start.device, unsure_below=start.unsure_below)
        app.state.recognizer = rec
    app.state.worker = InferenceWorker(rec, explain=app.state.explain, max_batch=limits.max_batch,
                                       max_queue=limits.max_queue, threads=start.threads or os.cpu_count() or 1).start()
    app.state.pool = ThreadPoolExecutor(max_workers=max(1, start.decode_threads), thread_name_prefix="wildfer-decode")
    app.state.started = time.time()
    log.info("wildfer serving model %s with detector %s", model_name(rec), detector_name(rec))
    try:
        yield
    finally:
        app.state.worker.stop()
        app.state.pool.shutdown(wait=False, cancel_futures=True)


async def _internal_error(request: Request, exc: Exception):
    log.error("internal error on %s: %s", request.url.path, exc, exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__}); the server keeps running", "internal")


def _add_middleware(app: FastAPI, cors, allowed_hosts) -> None:
    app.add_middleware(SecurityHeaders)
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"], max_age=600)
    app.add_middleware(HostCheck, allowed=[*LOCAL_HOSTS, *(allowed_hosts or ())])  # outermost: checked first


def create_app(recognizer=None, model: str | None = None, detector: str = "yunet", *,
               config: ServeConfig | None = None, explain=None, **settings) -> FastAPI:
    """Build the app. ``recognizer`` (anything following the Recognizer contract) is used as
    is; otherwise :func:`load_recognizer` (``model``, ``detector``, ``backend``) loads one
    once at startup. ``explain(recognizer, image, method=...)`` makes ``/v1/explain``'s maps
    (default :func:`wildfer.photo_maps.explain_photo`).

    The settings are a :class:`~wildfer.serve.config.ServeConfig` (``config``), or its fields
    as keywords (``create_app(model="wild", timeout=30, max_explain=4)``); either way they are
    checked against their declared ranges before anything starts (a one-line
    :class:`~wildfer.errors.WildferError`; an unknown keyword is a ``TypeError``).
    """
    if config is None:
        config = ServeConfig(model=model, detector=detector, **settings)
    elif settings or model is not None or detector != "yunet":
        raise TypeError("create_app: give either config= or its settings as keywords, not both")
    cfg = config.check()
    limits = Limits(
        max_upload_bytes=int(cfg.max_upload_mb * 1024 * 1024), max_pixels=int(cfg.max_pixels),
        timeout_s=float(cfg.timeout), max_queue=int(cfg.max_queue), max_batch=int(cfg.max_batch),
        work_pixels=int(cfg.work_pixels), explain_pixels=int(cfg.explain_pixels), max_predict=int(cfg.max_predict),
        max_explain=int(cfg.max_explain))
    app = FastAPI(title="wildfer", version=__version__, description=DESCRIPTION, docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    app.state.recognizer = recognizer
    app.state.explain = explain
    app.state.config = cfg
    app.state.startup = Startup(cfg.model, cfg.detector, cfg.backend, cfg.device, cfg.torch_threads, cfg.threads,
                                cfg.decode_threads, cfg.unsure_below)
    app.state.limits = limits
    app.state.slots = {"predict": Slots("predict", limits.max_predict), "explain": Slots("explain", limits.max_explain)}
    app.state.live = LiveGate()
    app.include_router(router)
    app.include_router(live_router)
    _add_middleware(app, cfg.cors, cfg.allowed_hosts)
    app.add_exception_handler(Exception, _internal_error)
    return app


# ----------------------------------------------------------------------------- multi-process

#: Environment variable carrying create_app's keyword arguments (JSON) to uvicorn workers.
CONFIG_ENV = "WILDFER_SERVE_CONFIG"


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / ``--workers N``: each worker process loads the
    model once from the settings in ``$WILDFER_SERVE_CONFIG``."""
    return create_app(**json.loads(os.environ.get(CONFIG_ENV, "{}")))
