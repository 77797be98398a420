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
``GET /``              the web page (every asset served from this package: no CDN).
``GET /docs``          an offline API reference rendered from ``/openapi.json`` (FastAPI's
                       Swagger page loads its scripts from a CDN, so it is switched off).

Safety: uploads are capped (413, on ``Content-Length`` and while reading), typed (415) and
decoded in memory (422 when they are not a decodable image; 413 over the pixel limit, the
decompression-bomb guard); nothing the client sends is written to disk and no client-given
path or file name is ever used; inference runs on a worker thread under a per-request time
limit (504) with a bounded queue (503); CORS is off unless origins are given.

Speed: a server built here loads its classifier on onnxruntime when it can (about half the
CPU time of torch per face here; the torch network stays for saliency maps), decodes JPEGs
with OpenCV, detects with libfacedetection directly, and runs ``threads`` inference threads
that share one copy of the model (see :mod:`wildfer.serve.worker`).
"""

from __future__ import annotations

import asyncio
import io
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
from .uploads import MULTIPART_SLACK, UploadError, decode_image, extract_image_bytes, read_body
from .worker import Busy, Expired, InferenceWorker

log = logging.getLogger("wildfer.serve")

#: Saliency methods accepted by ``/v1/explain`` (names of ``wildfer.explain``'s methods).
EXPLAIN_METHODS = ("gradcam", "vanilla", "smoothgrad", "ig", "occlusion")
#: Largest photo decoded by the server (pixels). Lower than the library's limit: a server
#: decodes several photos at once, and 40 MP is already 120 MB of RGB.
SERVER_MAX_PIXELS = 40_000_000

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
    503: {"description": "Server busy (queue full); retry later."},
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


def _load_assets() -> dict[str, tuple[bytes, str]]:
    root = resources.files("wildfer.serve") / "static"
    return {url: ((root / name).read_bytes(), mt) for url, (name, mt) in ASSETS.items()}


BACKENDS = ("auto", "onnx", "torch")


def model_explain_methods(clf) -> list[str]:
    """The saliency methods this classifier supports (an ensemble has no single layer for Grad-CAM)."""
    cam_ok = not getattr(getattr(clf, "net", None), "cam_unsupported", None)
    return [m for m in EXPLAIN_METHODS if cam_ok or not m.startswith("gradcam")]


def load_recognizer(model: str | None = None, detector: str = "yunet", backend: str = "auto",
                    compute_threads: int | None = 1):
    """The server's :class:`~wildfer.wild.Recognizer`: ``model`` with its classifier on
    onnxruntime (``backend="onnx"``), torch (``"torch"``), or onnxruntime when it can be
    exported and loaded here, torch otherwise (``"auto"``). ``compute_threads`` is the
    onnxruntime intra-op thread count (None: its default)."""
    from ..models.loader import PIPELINE_MODEL, load_model
    from ..wild import Recognizer

    model = PIPELINE_MODEL if model is None else model
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    clf = load_model(model)
    if backend != "torch":
        try:
            from ..models.onnx import attach_onnx

            attach_onnx(clf, threads=compute_threads)
        except Exception as e:  # noqa: BLE001 - no onnxruntime, or a model that does not export
            if backend == "onnx":
                raise ModelError(f"model {model!r} cannot run on onnxruntime here ({str(e)[:150]})") from None
            log.info("onnxruntime unavailable for %s (%s); classifying with torch", model, e)
            clf.backend, clf.runner = "torch", None
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
    """
    if max_upload_mb <= 0 or timeout <= 0:
        raise ValueError("max_upload_mb and timeout must be positive")
    limit = int(max_upload_mb * 1024 * 1024)
    assets = _load_assets()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        rec = app.state.recognizer
        if rec is None:
            rec = load_recognizer(model, detector, backend, compute_threads=torch_threads or 1)
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
                        "max_queue": int(max_queue), "max_batch": int(max_batch)}
    app.add_middleware(SecurityHeaders)
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"], max_age=600)

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError):
        return _error(exc.status, exc.message, exc.code)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        log.error("internal error on %s: %s", request.url.path, exc, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server keeps running", "internal")

    # ------------------------------------------------------------------ shared steps
    async def _receive_image(request: Request, deadline: float) -> tuple[np.ndarray, dict]:
        """Body -> checked bytes -> decoded RGB array, with the time each step took."""
        t0 = time.perf_counter()
        try:
            body = await asyncio.wait_for(read_body(request, limit + MULTIPART_SLACK), _left(deadline))
        except asyncio.TimeoutError:
            raise UploadError(408, f"the upload did not arrive within the {timeout:g} s limit", "timeout") from None
        data = extract_image_bytes(body, request.headers.get("content-type"), limit)
        del body
        t1 = time.perf_counter()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(app.state.pool, decode_image, data, int(max_pixels))
        image = await _wait(fut, deadline)
        t2 = time.perf_counter()
        return image, {"upload": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3}

    async def _wait(fut, deadline: float):
        try:
            return await asyncio.wait_for(fut, _left(deadline))
        except asyncio.TimeoutError:
            raise UploadError(504, f"processing took longer than the {timeout:g} s limit", "timeout") from None

    async def _run(kind: str, image, deadline: float, **options):
        try:
            job = app.state.worker.submit(kind, image, deadline, **options)
        except Busy as e:
            raise UploadError(503, str(e), "busy") from None
        try:
            result = await _wait(asyncio.wrap_future(job.future), deadline)
        except WildferError as e:
            raise UploadError(422, str(e), "bad_image") from None
        except Expired:
            raise UploadError(504, f"processing took longer than the {timeout:g} s limit", "timeout") from None
        except (UploadError, asyncio.CancelledError):  # time limit, or the client went away
            job.future.cancel()
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
        image, steps = await _receive_image(request, deadline)
        res, queue_ms = await _run("predict", image, deadline)
        out = jsonable(res.to_dict())
        timings = dict(out.get("timings_ms") or {})
        timings.update(steps, queue=queue_ms)
        timings["server_total"] = (time.perf_counter() - t0) * 1e3
        out["timings_ms"] = {k: round(float(v), 2) for k, v in timings.items()}
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
        """Explain each face's predicted expression with a saliency map on the photo."""
        t0 = time.perf_counter()
        deadline = _deadline()
        if method is None:
            method = ExplainMethod(model_explain_methods(getattr(app.state.recognizer, "classifier", None))[0])
        image, steps = await _receive_image(request, deadline)
        ex, queue_ms = await _run("explain", image, deadline, method=method.value)
        n_faces = len(getattr(ex, "faces", []) or [])
        timings = {k: float(v) for k, v in (getattr(ex, "timings", None) or {}).items()}
        timings.update(steps, queue=queue_ms)
        if format is ExplainFormat.json:
            out = jsonable(ex.to_dict())
            timings["server_total"] = (time.perf_counter() - t0) * 1e3
            out["timings_ms"] = {k: round(float(v), 2) for k, v in timings.items()}
            out["method"] = method.value
            return JSONResponse(out)
        loop = asyncio.get_running_loop()
        png = await _wait(loop.run_in_executor(app.state.pool, _overlay_png, ex), deadline)
        timings["server_total"] = (time.perf_counter() - t0) * 1e3
        return Response(png, media_type="image/png", headers={
            "X-Wildfer-Faces": str(n_faces),
            "X-Wildfer-Method": method.value,
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
            },
            "detector": _detector_name(rec),
            "mode": getattr(rec, "mode", None),
            "explain_methods": model_explain_methods(clf),
            "limits": app.state.limits,
            "version": __version__,
        }))

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
        app.add_api_route(url, (lambda u: (lambda: _asset(u)))(url), methods=["GET"], include_in_schema=False)

    return app


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


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
