"""The page's live camera: ``POST /v1/live`` takes one frame at a time from a client and
answers fast, and :class:`LiveGate` bounds each client's frames (one in progress, at most
:data:`LIVE_MAX_FPS` a second, each at most :data:`LIVE_MAX_BYTES` and :data:`LIVE_MAX_PIXELS`),
refusing extra frames at once instead of queueing them.
"""

from __future__ import annotations

import dataclasses
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..jsonio import json_ready
from .routes import (
    ERRORS,
    IMAGE_BODY,
    ClientWatch,
    Deadline,
    LimitsDep,
    PoolDep,
    RecognizerDep,
    SlotsDep,
    UploadErrorRoute,
    WorkerDep,
    rounded_timings,
    receive_image,
    run_job,
)
from .uploads import UploadError

#: The live camera's bounds per client: frames per second, bytes per frame, pixels per frame.
LIVE_MAX_FPS = 15.0
LIVE_MAX_BYTES = 1 << 20
LIVE_MAX_PIXELS = 1280 * 720


class LiveGate:
    """Per client (address), at most one live frame in progress and at most ``max_fps`` frames
    a second: a frame that comes while the client's previous one is still being read, or
    sooner than ``1 / max_fps`` after it, is refused at once (429), never queued, so a live
    view always gets its newest frame answered. Remembers at most ``max_clients`` clients."""

    def __init__(self, max_fps: float = LIVE_MAX_FPS, max_clients: int = 1024):
        self.max_fps = float(max_fps)
        self.min_gap = 0.9 / self.max_fps  # 10% for the network's jitter
        self.max_clients = int(max_clients)
        self.clients: dict[str, list] = {}  # client -> [frame in progress, start of the last frame]

    def enter(self, client: str) -> None:
        now = time.monotonic()
        state = self.clients.get(client)
        if state is not None and state[0]:
            raise UploadError(429, "the previous live frame is still being read; send the next one after its answer",
                              "busy", {"Retry-After": "0"})
        if state is not None and now - state[1] < self.min_gap:
            raise UploadError(429, f"live frames are limited to {self.max_fps:g} a second per client",
                              "too_fast", {"Retry-After": "0"})
        if state is None and len(self.clients) >= self.max_clients:  # forget the longest idle client
            idle = min((k for k, v in self.clients.items() if not v[0]), key=lambda k: self.clients[k][1], default=None)
            if idle is None:
                raise UploadError(503, "too many live clients", "busy", {"Retry-After": "1"})
            del self.clients[idle]
        self.clients[client] = [True, now]

    def leave(self, client: str) -> None:
        state = self.clients.get(client)
        if state is not None:
            state[0] = False



live_router = APIRouter(route_class=UploadErrorRoute)


@live_router.post("/v1/live", summary="One frame of a live camera: faces and expressions, answered fast",
             openapi_extra={"requestBody": IMAGE_BODY}, responses=ERRORS, tags=["api"])
async def live(request: Request, limits: LimitsDep, recognizer: RecognizerDep, worker: WorkerDep, pool: PoolDep,
               slots: SlotsDep):
    """A frame of the page's live camera mode (or any client streaming frames).

    Frames are at most 1 MB and 1280 x 720 pixels (413 beyond). Per client, one frame is read
    at a time and at most 15 a second: a frame sent sooner is refused at once with 429 and
    `Retry-After: 0`, never queued, so a client that sends its next frame after each answer
    always gets its newest frame read. Returns `{"width", "height", "faces": [{"box", "label",
    "probabilities", "top2"}], "timings_ms"}` (boxes in the frame's pixels).
    """
    t0 = time.perf_counter()
    gate: LiveGate = request.app.state.live
    client = request.client.host if request.client else "-"
    gate.enter(client)
    try:
        frame_limits = dataclasses.replace(limits, max_upload_bytes=min(limits.max_upload_bytes, LIVE_MAX_BYTES),
                                           max_pixels=min(limits.max_pixels, LIVE_MAX_PIXELS))
        deadline = Deadline(limits.timeout_s)
        async with slots["predict"], ClientWatch(request) as watch:
            photo, steps = await receive_image(request, deadline, watch, frame_limits, pool, LIVE_MAX_PIXELS)
            res, queue_ms = await run_job(worker, "predict", photo, deadline, watch.gone)
    finally:
        gate.leave(client)
    d = json_ready(photo.to_photo(res).to_dict())
    faces = [{k: f[k] for k in ("box", "label", "probabilities", "top2") if k in f} for f in d.get("faces", [])]
    timings = dict(d.get("timings_ms") or {})
    timings.update(steps, queue=queue_ms)
    timings["server_total"] = (time.perf_counter() - t0) * 1e3
    return JSONResponse({"width": d["width"], "height": d["height"], "faces": faces,
                         "timings_ms": rounded_timings(timings, 1)})


__all__ = ["LiveGate", "live_router", "LIVE_MAX_FPS", "LIVE_MAX_BYTES", "LIVE_MAX_PIXELS"]
