"""wildfer over HTTP: a FastAPI app around one :class:`~wildfer.wild.Recognizer`.

Endpoints
---------
``POST /v1/predict``   a photo (multipart field ``file``, or the raw body with an ``image/*``
                       content type) -> faces with box, landmarks, probabilities, label; the
                       image size; timings in milliseconds.
``POST /v1/explain``   same input -> a PNG saliency overlay, or JSON with ``?format=json``;
                       ``?method=gradcam|vanilla|smoothgrad|ig|occlusion``.
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
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import os
import time
from typing import Optional
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from enum import Enum
from importlib import resources

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from .. import __version__
from ..errors import ModelError, WildferError
from .uploads import MULTIPART_SLACK, UploadError, decode_image, extract_image_bytes, read_body, shrink_to
from .worker import Abandoned, Busy, Expired, InferenceWorker

log = logging.getLogger("wildfer.serve")

#: Saliency methods accepted by ``/v1/explain`` (names of ``wildfer.explain``'s methods).
EXPLAIN_METHODS = ("gradcam", "vanilla", "smoothgrad", "ig", "occlusion")
#: Largest photo decoded by the server (pixels). Lower than the library's limit: a server
#: decodes several photos at once, and 40 MP is already 120 MB of RGB.
SERVER_MAX_PIXELS = 40_000_000
#: Largest image the server works on (pixels): bigger photos are downscaled to this after
#: decoding. The detector looks at 640 pixels anyway; this bounds the saliency maps, the
#: overlay and the memory one request holds (a 40 MP overlay took 14 s and 3.5 GB).
SERVER_WORK_PIXELS = 4_000_000
#: The same for saliency maps: the overlay costs about 0.35 us of CPU per pixel here, and the
#: per-face maps are 48 x 48 whatever the photo's size.
SERVER_EXPLAIN_PIXELS = 1_000_000
#: Host names a server answers to besides those it is given (``allowed_hosts``).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Seconds a client is asked to wait (``Retry-After``) when an endpoint is full.
RETRY_AFTER_S = 1

#: The page's assets: URL path -> (file in ``wildfer/serve/static``, media type). A fixed
#: table: the client's path is only ever a key in it, never a file system path.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/docs": ("docs.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/docs.js": ("docs.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}
#: Content security policy of the pages: only this server's own scripts, styles and API.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")


class ExplainMethod(str, Enum):
    gradcam = "gradcam"
    vanilla = "vanilla"
    smoothgrad = "smoothgrad"
    ig = "ig"
    occlusion = "occlusion"


class ExplainFormat(str, Enum):
    png = "png"
    json = "json"


IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"],
                       "properties": {"file": {"type": "string", "format": "binary", "description": "the photo"}}},
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
ERRORS = {
    400: {"description": "Malformed request (bad multipart form, bad Content-Length)."},
    408: {"description": "The body took longer than the time limit to arrive."},
    413: {"description": "Upload over the size limit, or image over the pixel limit."},
    415: {"description": "Not an image content type."},
    422: {"description": "No image in the request, or it does not decode (truncated, corrupt)."},
    503: {"description": "Server busy (queue full, or the endpoint's requests in progress at its cap); "
                           "retry after the seconds in `Retry-After`."},
    504: {"description": "Processing took longer than the time limit."},
}


def jsonable(obj):
    """Numpy scalars / arrays and tuples -> plain JSON types (recursively)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _error(status: int, message: str, code: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": message, "error": code}, status_code=status, headers=headers)


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
        await _error(400, f"host {shown!r} is not served here (start the server with --allowed-host NAME to add "
                     f"a name)", "bad_host")(scope, receive, send)


def _load_assets() -> dict[str, tuple[bytes, str]]:
    root = resources.files("wildfer.serve") / "static"
    return {url: ((root / name).read_bytes(), mt) for url, (name, mt) in ASSETS.items()}


BACKENDS = ("auto", "onnx", "torch")


def model_explain_methods(clf) -> list[str]:
    """The saliency methods this classifier supports (an ensemble has no single layer for Grad-CAM)."""
    cam_ok = not getattr(getattr(clf, "net", None), "cam_unsupported", None)
    return [m for m in EXPLAIN_METHODS if cam_ok or not m.startswith("gradcam")]


def load_recognizer(model: str | None = None, detector: str = "yunet", backend: str = "auto",
                    compute_threads: int | None = 1, device: str = "auto"):
    """The server's :class:`~wildfer.wild.Recognizer`: ``model`` with its classifier on
    onnxruntime (``backend="onnx"``), torch (``"torch"``), or onnxruntime when it can be
    exported and loaded here, torch otherwise (``"auto"``). ``compute_threads`` is the
    onnxruntime intra-op thread count (None: its default).

    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; checked before the model loads): with
    ``backend="auto"`` a GPU only torch can use is chosen over onnxruntime on the CPU."""
    from ..models.loader import PIPELINE_MODEL, load_model, resolve_device
    from ..wild import Recognizer

    model = PIPELINE_MODEL if model is None else model
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
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
        return Recognizer(model=load_model(model, device=placed["torch"]), detector=detector)
    clf = load_model(model)
    try:
        clf = clf.with_backend("onnx", threads=compute_threads, device=placed["onnx"])
    except Exception as e:  # noqa: BLE001 - no onnxruntime, or a model that does not export
        if backend == "onnx" or "torch" not in placed:
            raise ModelError(f"model {model!r} cannot run on onnxruntime here ({str(e)[:150]})") from None
        log.info("onnxruntime unavailable for %s (%s); classifying with torch", model, e)
        clf = clf.to(placed["torch"])
    return Recognizer(model=clf, detector=detector)


def create_app(
    recognizer=None,
    model: str | None = None,
    detector: str = "yunet",
    *,
    max_upload_mb: float = 10.0,
    timeout: float = 10.0,
    cors: list[str] | tuple[str, ...] | None = None,
    max_pixels: int = SERVER_MAX_PIXELS,
    max_batch: int = 8,
    max_queue: int = 64,
    decode_threads: int = 2,
    torch_threads: int | None = None,
    threads: int | None = None,
    backend: str = "auto",
    device: str = "auto",
    work_pixels: int = SERVER_WORK_PIXELS,
    explain_pixels: int = SERVER_EXPLAIN_PIXELS,
    max_predict: int = 32,
    max_explain: int = 2,
    allowed_hosts: list[str] | tuple[str, ...] | None = None,
) -> FastAPI:
    """Build the app. ``recognizer`` (anything following the Recognizer contract) is used as
    is; otherwise :func:`load_recognizer` (``model``, ``detector``, ``backend``) loads one
    once at startup.

    Parameters
    ----------
    max_upload_mb: largest accepted photo file (413 beyond).
    timeout: seconds a request may take from its first byte to its answer (408 / 504 beyond).
    cors: origins allowed to call the API from other pages (CORS is off when empty).
    max_pixels: largest decoded image (413 beyond; the decompression-bomb guard).
    max_batch: most photos classified in one batch when requests arrive together.
    max_queue: most requests waiting for the model (503 beyond).
    decode_threads: threads decoding uploads and encoding PNGs.
    torch_threads: torch's (and onnxruntime's) intra-op threads in this process (``None``:
        leave torch as is); cores / (processes x threads) avoids oversubscription.
    threads: inference threads, i.e. photos processed at once, sharing one copy of the model
        (``None``: one per core; one when the detector is not thread-safe).
    backend: the classifier's backend when the app loads its own model (``auto``, ``onnx``,
        ``torch``).
    device: where that classifier runs (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    work_pixels: photos over this many pixels are downscaled to it before any model work (the
        answer's boxes are in the photo's pixels).
    explain_pixels: the same bound for ``/v1/explain`` (its PNG is the downscaled copy).
    max_predict, max_explain: most requests in progress on ``/v1/predict`` and ``/v1/explain``
        (503 with ``Retry-After`` beyond; a saliency map costs many forward passes).
    allowed_hosts: ``Host`` names and addresses the server answers to, besides
        :data:`LOCAL_HOSTS` (400 otherwise; see :class:`HostCheck`; ``["*"]``: any).
    """
    if max_upload_mb <= 0 or timeout <= 0:
        raise ValueError("max_upload_mb and timeout must be positive")
    for name, value in (("work_pixels", work_pixels), ("explain_pixels", explain_pixels), ("max_predict", max_predict),
                        ("max_explain", max_explain)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value!r}")
    limit = int(max_upload_mb * 1024 * 1024)
    assets = _load_assets()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        rec = app.state.recognizer
        if rec is None:
            rec = load_recognizer(model, detector, backend, compute_threads=torch_threads or 1, device=device)
            app.state.recognizer = rec
        app.state.worker = InferenceWorker(rec, max_batch=max_batch, max_queue=max_queue,
                                           threads=threads or os.cpu_count() or 1).start()
        app.state.pool = ThreadPoolExecutor(max_workers=max(1, decode_threads), thread_name_prefix="wildfer-decode")
        app.state.started = time.time()
        log.info("wildfer serving model %s with detector %s", _model_name(rec), _detector_name(rec))
        try:
            yield
        finally:
            app.state.worker.stop()
            app.state.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="wildfer",
        version=__version__,
        description="Facial expression recognition on photos: detect, align and classify every face; "
        "saliency maps of what the model looks at. Send a photo as the multipart field `file` "
        "(`curl -F file=@photo.jpg http://127.0.0.1:8000/v1/predict`) or as the raw body with an "
        "`image/*` content type.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.recognizer = recognizer
    app.state.limits = {"max_upload_bytes": limit, "max_pixels": int(max_pixels), "timeout_s": float(timeout),
                        "max_queue": int(max_queue), "max_batch": int(max_batch), "work_pixels": int(work_pixels),
                        "explain_pixels": int(explain_pixels), "max_predict": int(max_predict), "max_explain": int(max_explain)}
    app.state.slots = {"predict": Slots("predict", max_predict), "explain": Slots("explain", max_explain)}
    app.add_middleware(SecurityHeaders)
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"], max_age=600)
    app.add_middleware(HostCheck, allowed=[*LOCAL_HOSTS, *(allowed_hosts or ())])  # outermost: checked first

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError):
        return _error(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        log.error("internal error on %s: %s", request.url.path, exc, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server keeps running", "internal")

    # ------------------------------------------------------------------ shared steps
    async def _receive_image(request: Request, deadline: float, watch: ClientWatch,
                             bound: int) -> tuple[PhotoOnServer, dict]:
        """Body -> checked bytes -> decoded RGB array -> the work copy (at most ``bound`` pixels),
        with the time each step took.

        Parsing, decoding and downscaling run on the decode threads: a body of many multipart
        parts or a large PNG never holds the event loop (and every other request) up.
        """
        from starlette.requests import ClientDisconnect

        t0 = time.perf_counter()
        try:
            body = await asyncio.wait_for(read_body(request, limit + MULTIPART_SLACK), _left(deadline))
        except asyncio.TimeoutError:
            raise UploadError(408, f"the upload did not arrive within the {timeout:g} s limit", "timeout") from None
        except ClientDisconnect:
            raise UploadError(499, "the client closed the connection during the upload", "client_gone") from None
        t1 = time.perf_counter()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(app.state.pool, _prepare_photo, body, request.headers.get("content-type"),
                                   limit, int(max_pixels), int(bound))
        del body
        photo = await _settle(fut, deadline, watch.start())
        t2 = time.perf_counter()
        return photo, {"upload": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3}

    async def _settle(fut, deadline: float, gone, job=None):
        """``fut``'s result; 504 at the deadline, 499 when the client has gone first (``job``,
        if any, is abandoned either way: dropped if it waits, stopped if it runs)."""
        waiters = {fut} if gone is None else {fut, gone}
        done, _ = await asyncio.wait(waiters, timeout=_left(deadline), return_when=asyncio.FIRST_COMPLETED)
        if fut in done:
            return fut.result()
        fut.cancel()
        if job is not None:
            job.abandon()
        if gone is not None and gone in done:
            raise UploadError(499, "the client closed the connection", "client_gone")
        raise UploadError(504, f"processing took longer than the {timeout:g} s limit", "timeout")

    async def _run(kind: str, photo: PhotoOnServer, deadline: float, gone, **options):
        try:
            job = app.state.worker.submit(kind, photo.image, deadline, **options)
        except Busy as e:
            raise UploadError(503, str(e), "busy", {"Retry-After": str(RETRY_AFTER_S)}) from None
        try:
            result = await _settle(asyncio.wrap_future(job.future), deadline, gone, job)
        except WildferError as e:
            raise UploadError(422, str(e), "bad_image") from None
        except Expired:
            raise UploadError(504, f"processing took longer than the {timeout:g} s limit", "timeout") from None
        except Abandoned:
            raise UploadError(504, f"processing took longer than the {timeout:g} s limit", "timeout") from None
        except asyncio.CancelledError:
            job.abandon()
            raise
        queue_ms = (job.started_at - job.queued_at) * 1e3 if job.started_at else 0.0
        return result, queue_ms

    def _deadline() -> float:
        return time.monotonic() + float(timeout)

    # ------------------------------------------------------------------ API
    @app.post("/v1/predict", summary="Faces and their expressions in a photo", openapi_extra={"requestBody": IMAGE_BODY},
              responses=ERRORS, tags=["api"])
    async def predict(request: Request):
        """Detect every face, align it and classify its expression.

        Returns `{"width", "height", "mode", "faces": [{"box": [left, top, right, bottom], "landmarks",
        "score", "label", "probabilities", "flags"}], "timings_ms": {...}, "model"}`; boxes and landmarks
        are in pixels of the photo as uploaded (after EXIF rotation); faces come in reading order.
        """
        t0 = time.perf_counter()
        deadline = _deadline()
        async with app.state.slots["predict"], ClientWatch(request) as watch:
            photo, steps = await _receive_image(request, deadline, watch, work_pixels)
            res, queue_ms = await _run("predict", photo, deadline, watch.gone)
        out = jsonable(photo.to_photo(res).to_dict())
        timings = dict(out.get("timings_ms") or {})
        timings.update(steps, queue=queue_ms)
        timings["server_total"] = (time.perf_counter() - t0) * 1e3
        out["timings_ms"] = {k: round(float(v), 2) for k, v in timings.items()}
        out["scale"] = photo.scale
        out["model"] = _model_name(app.state.recognizer)
        return JSONResponse(out)

    @app.post("/v1/explain", summary="Saliency map: where the model looks", openapi_extra={"requestBody": IMAGE_BODY},
              responses={200: {"content": {"image/png": {}, "application/json": {}},
                               "description": "PNG overlay (default) or JSON maps"}, **ERRORS}, tags=["api"])
    async def explain(
        request: Request,
        method: Optional[ExplainMethod] = Query(None, description="saliency method (default: gradcam, or the "
                                                "first of /v1/models' explain_methods where the model has no Grad-CAM)"),
        format: ExplainFormat = Query(ExplainFormat.png, description="png: the photo with the heat map blended "
                                      "in; json: faces and per-face maps"),
    ):
        """Explain each face's predicted expression with a saliency map on the photo.

        A photo over the server's `explain_pixels` is explained on a downscaled copy: the PNG is
        that copy (`X-Wildfer-Scale` says by how much), the JSON's boxes are in the photo's pixels.
        """
        t0 = time.perf_counter()
        deadline = _deadline()
        if method is None:
            method = ExplainMethod(model_explain_methods(getattr(app.state.recognizer, "classifier", None))[0])
        async with app.state.slots["explain"], ClientWatch(request) as watch:
            photo, steps = await _receive_image(request, deadline, watch, explain_pixels)
            ex, queue_ms = await _run("explain", photo, deadline, watch.gone, method=method.value)
            n_faces = len(getattr(ex, "faces", []) or [])
            timings = {k: float(v) for k, v in (getattr(ex, "timings", None) or {}).items()}
            timings.update(steps, queue=queue_ms)
            if format is ExplainFormat.json:
                out = jsonable(photo.to_photo(ex).to_dict())
                timings["server_total"] = (time.perf_counter() - t0) * 1e3
                out["timings_ms"] = {k: round(float(v), 2) for k, v in timings.items()}
                out["method"] = method.value
                out["scale"] = photo.scale
                return JSONResponse(out)
            loop = asyncio.get_running_loop()
            png = await _settle(loop.run_in_executor(app.state.pool, _overlay_png, ex), deadline, watch.gone)
        timings["server_total"] = (time.perf_counter() - t0) * 1e3
        return Response(png, media_type="image/png", headers={
            "X-Wildfer-Faces": str(n_faces),
            "X-Wildfer-Method": method.value,
            "X-Wildfer-Scale": f"{photo.scale:g}",
            "X-Wildfer-Timings-Ms": json.dumps({k: round(float(v), 1) for k, v in timings.items()}),
            "Cache-Control": "no-store",
        })

    @app.get("/v1/models", summary="The model and detector this server uses", tags=["api"])
    async def models():
        rec = app.state.recognizer
        clf = getattr(rec, "classifier", None)
        return JSONResponse(jsonable({
            "model": {
                "name": _model_name(rec),
                "arch": getattr(clf, "arch", ""),
                "classes": list(getattr(clf, "labels", ()) or ()),
                "input_size": int(getattr(clf, "size", 48)),
                "backend": str(getattr(clf, "backend", "") or ""),
                "device": str(getattr(clf, "device", "cpu") or "cpu"),
            },
            "detector": _detector_name(rec),
            "mode": getattr(rec, "mode", None),
            "explain_methods": model_explain_methods(clf),
            "limits": app.state.limits,
            "version": __version__,
        }))

    @app.head("/healthz", include_in_schema=False)
    @app.get("/healthz", summary="Liveness", tags=["ops"])
    async def healthz():
        worker = app.state.worker
        ok = worker.alive
        return JSONResponse({"status": "ok" if ok else "down", "model": _model_name(app.state.recognizer),
                             "queue": worker.pending(), "completed": worker.completed,
                             "threads": worker.threads, "inference_cpu_s": round(worker.cpu_s, 3),
                             "uptime_s": round(time.time() - app.state.started, 1)},
                            status_code=200 if ok else 503)

    # ------------------------------------------------------------------ page
    def _asset(url: str):
        body, mt = assets[url]
        headers = {"Cache-Control": "no-cache"}
        if mt.startswith("text/html"):
            headers["Content-Security-Policy"] = CSP
        return Response(body, media_type=mt, headers=headers)

    for url in ASSETS:
        app.add_api_route(url, (lambda u: (lambda: _asset(u)))(url), methods=["GET", "HEAD"], include_in_schema=False)

    return app


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class Slots:
    """At most ``limit`` requests of one endpoint in progress (``async with``); the next one
    gets 503 with ``Retry-After`` at once, before its body is read. The event loop is one
    thread, so a plain counter is enough."""

    def __init__(self, name: str, limit: int):
        self.name, self.limit, self.active = name, int(limit), 0

    async def __aenter__(self) -> Slots:
        if self.active >= self.limit:
            raise UploadError(503, f"server busy: {self.limit} {self.name} request(s) already in progress; retry "
                              f"in {RETRY_AFTER_S} s", "busy", {"Retry-After": str(RETRY_AFTER_S)})
        self.active += 1
        return self

    async def __aexit__(self, *exc) -> None:
        self.active -= 1


class ClientWatch:
    """``async with ClientWatch(request) as watch``: once the body is read, :meth:`start` gives
    a task that finishes when the client closes its connection (ASGI ``http.disconnect``), so
    the waits that follow stop for it; the task ends with the block."""

    def __init__(self, request: Request):
        self.request = request
        self.gone: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        if self.gone is None:
            self.gone = asyncio.ensure_future(_client_gone(self.request))
        return self.gone

    async def __aenter__(self) -> ClientWatch:
        return self

    async def __aexit__(self, *exc) -> None:
        if self.gone is not None:
            self.gone.cancel()


async def _client_gone(request: Request) -> None:
    """Returns when the client has closed the connection (call after the body is read: the
    server's next message is then the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)


class PhotoOnServer:
    """An upload decoded (``width`` x ``height``) and its work copy ``image`` (at most the
    server's ``work_pixels``); :meth:`to_photo` maps a result on the copy back to the photo."""

    def __init__(self, width: int, height: int, image: np.ndarray):
        self.width, self.height, self.image = int(width), int(height), image
        self.sx = self.width / image.shape[1]
        self.sy = self.height / image.shape[0]

    @property
    def scale(self) -> float:
        """Work-copy pixels per photo pixel (1.0: the photo itself)."""
        return round(self.image.shape[1] / self.width, 6)

    def to_photo(self, result):
        """``result`` (an ImageResult or ExplainResult on the work copy) with its size, boxes and
        landmarks in the photo's pixels (changed in place, and returned)."""
        if self.sx == 1.0 and self.sy == 1.0:
            return result
        for f in getattr(result, "faces", None) or []:
            left, top, right, bottom = f.box
            f.box = (left * self.sx, top * self.sy, right * self.sx, bottom * self.sy)
            if f.landmarks is not None:
                f.landmarks = [[x * self.sx, y * self.sy] for x, y in f.landmarks]
        result.width, result.height = self.width, self.height
        return result


def _prepare_photo(body: bytes, content_type: str | None, limit: int, max_pixels: int,
                   work_pixels: int) -> PhotoOnServer:
    """Request body -> image bytes -> decoded photo -> its work copy (on a decode thread)."""
    rgb = decode_image(extract_image_bytes(body, content_type, limit), max_pixels)
    h, w = rgb.shape[:2]
    return PhotoOnServer(w, h, shrink_to(rgb, work_pixels))


def _overlay_png(ex) -> bytes:
    buf = io.BytesIO()
    ex.overlay().save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _model_name(rec) -> str:
    clf = getattr(rec, "classifier", None)
    return str(getattr(clf, "name", "") or getattr(rec, "model", "") or "")


def _detector_name(rec) -> str:
    det = getattr(rec, "detector", None)
    return str(getattr(det, "name", det) or "")


# ----------------------------------------------------------------------------- multi-process

#: Environment variable carrying create_app's keyword arguments (JSON) to uvicorn workers.
CONFIG_ENV = "WILDFER_SERVE_CONFIG"


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / ``--workers N``: each worker process loads the
    model once from the settings in ``$WILDFER_SERVE_CONFIG``."""
    return create_app(**json.loads(os.environ.get(CONFIG_ENV, "{}")))
