"""The service's endpoints on one :class:`fastapi.APIRouter`.

What the handlers share comes from dependencies that read ``request.app.state``:
:func:`get_limits` (:class:`Limits`), :func:`get_recognizer`, :func:`get_worker` (the
:class:`~wildfer.serve.worker.InferenceWorker` that runs the model), :func:`get_pool` (the
decode threads), :func:`get_slots` (each endpoint's cap on requests in progress) and
:func:`get_started`. :func:`wildfer.serve.app.create_app` puts them there; a test mounts
:data:`router` on a bare ``FastAPI()`` and replaces them with ``app.dependency_overrides``.
The routes answer an :class:`~wildfer.serve.uploads.UploadError` themselves
(:class:`UploadErrorRoute`), so they need no exception handler from the app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
from concurrent.futures import Executor
from enum import Enum
from typing import Annotated, Any, Optional

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import MissingTorch, WildferError
from ..explain import SALIENCY_METHODS
from ..models.runtime import has_torch
from ..jsonio import json_ready
from .pages import ASSETS, asset_endpoint
from .uploads import (MIN_WORK_SHARE, MULTIPART_SLACK, UploadError, decode_photo, extract_image_bytes, read_body,
                      shrink_to)
from .worker import Abandoned, Busy, Expired, InferenceWorker

#: Saliency methods accepted by ``/v1/explain``: ``wildfer.explain``'s, Grad-CAM first (the page's default).
EXPLAIN_METHODS = ("gradcam", *(m for m in SALIENCY_METHODS if m != "gradcam"))
#: Seconds a client is asked to wait (``Retry-After``) when an endpoint is full.
RETRY_AFTER_S = 1

#: ``/v1/explain``'s ``method`` values: :data:`EXPLAIN_METHODS`, one table for both
ExplainMethod = Enum("ExplainMethod", {m: m for m in EXPLAIN_METHODS}, type=str)


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
    422: {"description": "No image in the request, or it does not decode (truncated, corrupt); a saliency "
                         "method the model cannot use."},
    503: {"description": "Server busy (queue full, or the endpoint's requests in progress at its cap); "
                           "retry after the seconds in `Retry-After`."},
    504: {"description": "Processing took longer than the time limit."},
}


@dataclasses.dataclass(frozen=True)
class Limits:
    """The service's limits, as ``/v1/models`` reports them (see ``create_app``'s parameters)."""

    max_upload_bytes: int
    max_pixels: int
    timeout_s: float
    max_queue: int
    max_batch: int
    work_pixels: int
    explain_pixels: int
    max_predict: int
    max_explain: int


def error_response(status: int, message: str, code: str, headers: dict | None = None) -> JSONResponse:
    """The service's error answer: ``{"detail": message, "error": code}``."""
    return JSONResponse({"detail": message, "error": code}, status_code=status, headers=headers)


def model_explain_methods(clf) -> list[str]:
    """The saliency methods this classifier supports (:func:`wildfer.photo_maps.saliency_methods_for`:
    an ensemble has no single layer for Grad-CAM, and one that reads each face in several crops
    is explained by the gradient methods; without torch there are none)."""
    from ..photo_maps import saliency_methods_for

    return saliency_methods_for(clf, EXPLAIN_METHODS) if has_torch() else []


def model_name(rec) -> str:
    clf = getattr(rec, "classifier", None)
    return str(getattr(clf, "name", "") or getattr(rec, "model", "") or "")


def detector_name(rec) -> str:
    det = getattr(rec, "detector", None)
    return str(getattr(det, "name", det) or "")


# ----------------------------------------------------------------------------- guards


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


class Deadline:
    """A request's time limit: ``seconds`` from now (``at`` on the ``time.monotonic`` clock)."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.at = time.monotonic() + self.seconds

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> UploadError:
        """The 504 of a request whose processing outlasted the limit."""
        return UploadError(504, f"processing took longer than the {self.seconds:g} s limit", "timeout")


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


# ----------------------------------------------------------------------------- photos


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
    """Request body -> image bytes -> decoded photo -> its work copy (on a decode thread). A
    large JPEG is decoded reduced where that keeps :data:`~wildfer.serve.uploads.MIN_WORK_SHARE`
    of ``work_pixels`` (:func:`~wildfer.serve.uploads.decode_photo`)."""
    rgb, (w, h) = decode_photo(extract_image_bytes(body, content_type, limit), max_pixels,
                               int(work_pixels * MIN_WORK_SHARE))
    return PhotoOnServer(w, h, shrink_to(rgb, work_pixels))


def _overlay_png(ex) -> bytes:
    buf = io.BytesIO()
    ex.overlay().save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# ----------------------------------------------------------------------------- shared steps


async def receive_image(request: Request, deadline: Deadline, watch: ClientWatch, limits: Limits,
                        pool: Executor, bound: int) -> tuple[PhotoOnServer, dict]:
    """Body -> checked bytes -> decoded RGB array -> the work copy (at most ``bound`` pixels),
    with the time each step took.

    Parsing, decoding and downscaling run on the decode threads (``pool``): a body of many
    multipart parts or a large PNG never holds the event loop (and every other request) up.
    """
    limit = limits.max_upload_bytes
    t0 = time.perf_counter()
    try:
        body = await asyncio.wait_for(read_body(request, limit + MULTIPART_SLACK), deadline.left())
    except asyncio.TimeoutError:
        raise UploadError(408, f"the upload did not arrive within the {deadline.seconds:g} s limit",
                          "timeout") from None
    except ClientDisconnect:
        raise UploadError(499, "the client closed the connection during the upload", "client_gone") from None
    t1 = time.perf_counter()
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(pool, _prepare_photo, body, request.headers.get("content-type"),
                               limit, int(limits.max_pixels), int(bound))
    del body
    photo = await settle(fut, deadline, watch.start())
    t2 = time.perf_counter()
    return photo, {"upload": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3}


async def settle(fut, deadline: Deadline, gone, job=None):
    """``fut``'s result; 504 at the deadline, 499 when the client has gone first (``job``,
    if any, is abandoned either way: dropped if it waits, stopped if it runs)."""
    waiters = {fut} if gone is None else {fut, gone}
    done, _ = await asyncio.wait(waiters, timeout=deadline.left(), return_when=asyncio.FIRST_COMPLETED)
    if fut in done:
        return fut.result()
    fut.cancel()
    if job is not None:
        job.abandon()
    if gone is not None and gone in done:
        raise UploadError(499, "the client closed the connection", "client_gone")
    raise deadline.passed()


async def run_job(worker: InferenceWorker, kind: str, photo: PhotoOnServer, deadline: Deadline, gone,
                  **options) -> tuple[Any, float]:
    """``kind`` ("predict" or "explain") of ``photo`` on ``worker``: its result and the
    milliseconds it waited in the queue (503 when the queue is full, 422 when the image is
    refused, 504 past the deadline)."""
    try:
        job = worker.submit(kind, photo.image, deadline.at, **options)
    except Busy as e:
        raise UploadError(503, str(e), "busy", {"Retry-After": str(RETRY_AFTER_S)}) from None
    try:
        result = await settle(asyncio.wrap_future(job.future), deadline, gone, job)
    except WildferError as e:
        raise UploadError(422, str(e), "bad_image") from None
    except (Expired, Abandoned):
        raise deadline.passed() from None
    except asyncio.CancelledError:
        job.abandon()
        raise
    queue_ms = (job.started_at - job.queued_at) * 1e3 if job.started_at else 0.0
    return result, queue_ms


def rounded_timings(timings: dict, digits: int) -> dict:
    return {k: round(float(v), digits) for k, v in timings.items()}


# ----------------------------------------------------------------------------- dependencies


def get_limits(request: Request) -> Limits:
    return request.app.state.limits


def get_recognizer(request: Request):
    return request.app.state.recognizer


def get_worker(request: Request) -> InferenceWorker:
    return request.app.state.worker


def get_pool(request: Request) -> Executor:
    return request.app.state.pool


def get_slots(request: Request) -> dict[str, Slots]:
    return request.app.state.slots


def get_started(request: Request) -> float:
    return request.app.state.started


LimitsDep = Annotated[Limits, Depends(get_limits)]
RecognizerDep = Annotated[Any, Depends(get_recognizer)]
WorkerDep = Annotated[InferenceWorker, Depends(get_worker)]
PoolDep = Annotated[Executor, Depends(get_pool)]
SlotsDep = Annotated[dict, Depends(get_slots)]
StartedDep = Annotated[float, Depends(get_started)]


class UploadErrorRoute(APIRoute):
    """A route that answers an :class:`UploadError` raised by its handler (or a dependency)
    with :func:`error_response`."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def answer_upload_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except UploadError as e:
                return error_response(e.status, e.message, e.code, e.headers)

        return answer_upload_errors


router = APIRouter(route_class=UploadErrorRoute)


# ----------------------------------------------------------------------------- API


@router.post("/v1/predict", summary="Faces and their expressions in a photo", openapi_extra={"requestBody": IMAGE_BODY},
             responses=ERRORS, tags=["api"])
async def predict(request: Request, limits: LimitsDep, recognizer: RecognizerDep, worker: WorkerDep, pool: PoolDep,
                  slots: SlotsDep):
    """Detect every face, align it and classify its expression.

    Returns `{"width", "height", "mode", "faces": [{"box": [left, top, right, bottom], "landmarks",
    "score", "label", "probabilities", "top2", "flags"}], "timings_ms": {...}, "model"}`; `top2` is the
    two likeliest labels, `[{"label", "probability"}]`, most likely first; boxes and landmarks
    are in pixels of the photo as uploaded (after EXIF rotation); faces come in reading order.
    """
    t0 = time.perf_counter()
    deadline = Deadline(limits.timeout_s)
    async with slots["predict"], ClientWatch(request) as watch:
        photo, steps = await receive_image(request, deadline, watch, limits, pool, limits.work_pixels)
        res, queue_ms = await run_job(worker, "predict", photo, deadline, watch.gone)
    out = json_ready(photo.to_photo(res).to_dict())
    timings = dict(out.get("timings_ms") or {})
    timings.update(steps, queue=queue_ms)
    timings["server_total"] = (time.perf_counter() - t0) * 1e3
    out["timings_ms"] = rounded_timings(timings, 2)
    out["scale"] = photo.scale
    out["model"] = model_name(recognizer)
    return JSONResponse(out)


@router.post("/v1/explain", summary="Saliency map: where the model looks", openapi_extra={"requestBody": IMAGE_BODY},
             responses={200: {"content": {"image/png": {}, "application/json": {}},
                              "description": "PNG overlay (default) or JSON maps"}, **ERRORS}, tags=["api"])
async def explain(
    request: Request,
    limits: LimitsDep,
    recognizer: RecognizerDep,
    worker: WorkerDep,
    pool: PoolDep,
    slots: SlotsDep,
    method: Optional[ExplainMethod] = Query(None, description="saliency method (default: gradcam, or the "
                                            "first of /v1/models' explain_methods where the model has no Grad-CAM)"),
    format: ExplainFormat = Query(ExplainFormat.png, description="png: the photo with the heat map blended "
                                  "in; json: faces and per-face maps"),
):
    """Explain each face's predicted expression with a saliency map on the photo.

    A photo over the server's `explain_pixels` is explained on a downscaled copy: the PNG is
    that copy (`X-Wildfer-Scale` says by how much), the JSON's boxes are in the photo's pixels.
    """
    if not has_torch():
        return error_response(501, str(MissingTorch("saliency maps")), "no_torch")
    t0, deadline = time.perf_counter(), Deadline(limits.timeout_s)
    clf = getattr(recognizer, "classifier", None)
    usable = model_explain_methods(clf)
    if method is None:
        method = ExplainMethod(usable[0])
    elif method.value not in usable and clf is not None:  # said before the upload is read
        from ..photo_maps import check_saliency_method

        try:
            check_saliency_method(method.value, clf)
        except WildferError as e:
            return error_response(422, str(e), "method_unsupported")
    async with slots["explain"], ClientWatch(request) as watch:
        photo, steps = await receive_image(request, deadline, watch, limits, pool, limits.explain_pixels)
        ex, queue_ms = await run_job(worker, "explain", photo, deadline, watch.gone, method=method.value)
        n_faces = len(getattr(ex, "faces", []) or [])
        timings = {k: float(v) for k, v in (getattr(ex, "timings", None) or {}).items()}
        timings.update(steps, queue=queue_ms)
        if format is ExplainFormat.json:
            out = json_ready(photo.to_photo(ex).to_dict())
            timings["server_total"] = (time.perf_counter() - t0) * 1e3
            out["timings_ms"] = rounded_timings(timings, 2)
            out["method"] = method.value
            out["scale"] = photo.scale
            return JSONResponse(out)
        loop = asyncio.get_running_loop()
        png = await settle(loop.run_in_executor(pool, _overlay_png, ex), deadline, watch.gone)
    timings["server_total"] = (time.perf_counter() - t0) * 1e3
    return Response(png, media_type="image/png", headers={
        "X-Wildfer-Faces": str(n_faces),
        "X-Wildfer-Method": method.value,
        "X-Wildfer-Scale": f"{photo.scale:g}",
        "X-Wildfer-Timings-Ms": json.dumps(rounded_timings(timings, 1)),
        "Cache-Control": "no-store",
    })


@router.get("/v1/models", summary="The model and detector this server uses", tags=["api"])
async def models(limits: LimitsDep, recognizer: RecognizerDep):
    clf = getattr(recognizer, "classifier", None)
    return JSONResponse(json_ready({
        "model": {
            "name": model_name(recognizer),
            "arch": getattr(clf, "arch", ""),
            "classes": list(getattr(clf, "labels", ()) or ()),
            "input_size": int(getattr(clf, "size", 48)),
            "backend": str(getattr(clf, "backend", "") or ""),
            "member_backends": getattr(clf, "member_backends", None),  # a mixed ensemble's, per member
            "device": str(getattr(clf, "device", "cpu") or "cpu"),
        },
        "detector": detector_name(recognizer),
        "mode": getattr(recognizer, "mode", None),
        "explain_methods": model_explain_methods(clf),
        "limits": dataclasses.asdict(limits),
        "version": __version__,
    }))


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Liveness", tags=["ops"])
async def healthz(recognizer: RecognizerDep, worker: WorkerDep, started: StartedDep):
    ok = worker.alive
    return JSONResponse({"status": "ok" if ok else "down", "model": model_name(recognizer),
                         "queue": worker.pending(), "completed": worker.completed,
                         "threads": worker.threads, "inference_cpu_s": round(worker.cpu_s, 3),
                         "uptime_s": round(time.time() - started, 1)},
                        status_code=200 if ok else 503)


# ----------------------------------------------------------------------------- page


for _url in ASSETS:  # the page and its static files
    router.add_api_route(_url, asset_endpoint(_url), methods=["GET", "HEAD"], include_in_schema=False)
