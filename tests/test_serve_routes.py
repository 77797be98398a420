"""The service's handlers on their own: :data:`wildfer.serve.routes.router` mounted on a bare
``FastAPI()``, its state (limits, recognizer, inference worker, decode threads, request caps)
replaced through ``app.dependency_overrides`` by a fake worker and tiny limits. No model, no
server, no lifespan."""

from __future__ import annotations

import dataclasses
import re
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

pytest.importorskip("httpx")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from wildfer.errors import WildferError  # noqa: E402
from wildfer.serve import pages, routes  # noqa: E402
from wildfer.serve.routes import Limits, Slots  # noqa: E402
from wildfer.serve.worker import Busy, Expired, Job  # noqa: E402
from serve_helpers import FakeResult  # noqa: E402

TINY = Limits(max_upload_bytes=4096, max_pixels=10_000, timeout_s=5.0, max_queue=1, max_batch=1, work_pixels=10_000,
              explain_pixels=10_000, max_predict=1, max_explain=1)


@dataclass
class Face:
    box: tuple
    landmarks: list | None = None


class FakeWorker:
    """Follows the InferenceWorker contract: answers every job at once with one face, the left
    half of the image; ``busy`` makes :meth:`submit` refuse, ``error`` fails each job."""

    threads, completed, cpu_s = 1, 0, 0.0

    def __init__(self, busy: bool = False, error: Exception | None = None, alive: bool = True):
        self.busy, self.error, self.alive = busy, error, alive
        self.jobs: list[Job] = []

    def pending(self) -> int:
        return 0

    def submit(self, kind, image, deadline, **options) -> Job:
        if self.busy:
            raise Busy("server busy: 1 requests already waiting")
        job = Job(kind=kind, image=image, deadline=deadline, options=options)
        job.started_at = job.queued_at
        h, w = image.shape[:2]
        if self.error is not None:
            job.future.set_exception(self.error)
        else:
            job.future.set_result(FakeResult(w, h, faces=[Face((0, 0, w / 2, h))]))
        self.jobs.append(job)
        return job


class FakeRecognizer:
    classifier = type("C", (), {"name": "fake", "arch": "none", "labels": ("happy", "sad"), "size": 48})()
    detector = type("D", (), {"name": "nodetector"})()


@pytest.fixture
def mount():
    """``mount(worker, limits=TINY, slots=None)`` -> a TestClient of the router alone."""
    pool = ThreadPoolExecutor(max_workers=1)

    def make(worker, limits: Limits = TINY, slots: dict | None = None) -> TestClient:
        app = FastAPI()
        app.include_router(routes.router)
        slots = slots or {"predict": Slots("predict", limits.max_predict),
                          "explain": Slots("explain", limits.max_explain)}
        app.dependency_overrides.update({
            routes.get_limits: lambda: limits,
            routes.get_recognizer: FakeRecognizer,
            routes.get_worker: lambda: worker,
            routes.get_pool: lambda: pool,
            routes.get_slots: lambda: slots,
            routes.get_started: lambda: time.time() - 5.0,
        })
        return TestClient(app)

    yield make
    pool.shutdown(wait=True)


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def post(client: TestClient, data: bytes, url: str = "/v1/predict"):
    return client.post(url, files={"file": ("photo.png", data, "image/png")})


# ----------------------------------------------------------------------------- predict


def test_predict_returns_the_workers_faces(mount):
    worker = FakeWorker()
    r = post(mount(worker), png(40, 20))
    assert r.status_code == 200, r.text
    js = r.json()
    assert (js["width"], js["height"], js["scale"], js["model"]) == (40, 20, 1.0, "fake")
    assert js["faces"] == [{"box": [0, 0, 20.0, 20], "label": "happy"}]
    assert {"detect", "upload", "decode", "queue", "server_total"} <= set(js["timings_ms"])
    assert [j.kind for j in worker.jobs] == ["predict"] and worker.jobs[0].image.shape == (20, 40, 3)


def test_predict_maps_boxes_of_a_downscaled_photo_back(mount):
    worker = FakeWorker()
    r = post(mount(worker, dataclasses.replace(TINY, work_pixels=800)), png(80, 40))  # 3200 px -> 40 x 20
    assert r.status_code == 200, r.text
    js = r.json()
    assert worker.jobs[0].image.shape[:2] == (20, 40)
    assert (js["width"], js["height"], js["scale"]) == (80, 40, 0.5)
    assert js["faces"][0]["box"] == [0, 0, 40.0, 40.0]


@pytest.mark.parametrize("data, code", [(b"\x89PNG" + bytes(30_000), "too_large"), (png(200, 100), "too_many_pixels")],
                         ids=["bytes", "pixels"])
def test_over_limit_upload_is_refused_with_413(mount, data, code):
    worker = FakeWorker()
    r = post(mount(worker), data)
    assert r.status_code == 413 and r.json()["error"] == code, r.text
    assert worker.jobs == []


def test_not_an_image_is_refused_with_415(mount):
    r = mount(FakeWorker()).post("/v1/predict", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text


def test_busy_worker_answers_503_with_retry_after(mount):
    r = post(mount(FakeWorker(busy=True)), png(8, 8))
    assert r.status_code == 503 and r.json()["error"] == "busy"
    assert r.headers["retry-after"] == "1"


def test_endpoint_at_its_cap_answers_503_before_reading(mount):
    full = Slots("predict", 1)
    full.active = 1
    worker = FakeWorker()
    r = post(mount(worker, slots={"predict": full, "explain": Slots("explain", 1)}), png(8, 8))
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "1 predict request(s) already in progress" in r.json()["detail"] and worker.jobs == []


@pytest.mark.parametrize("error, status, code", [(WildferError("no pixels"), 422, "bad_image"),
                                                 (Expired("late"), 504, "timeout")])
def test_failed_job_answers_its_status(mount, error, status, code):
    r = post(mount(FakeWorker(error=error)), png(8, 8))
    assert r.status_code == status and r.json()["error"] == code, r.text


# ----------------------------------------------------------------------------- explain


def test_explain_json_and_png(mount):
    worker = FakeWorker()
    client = mount(worker)
    js = post(client, png(16, 12), "/v1/explain?format=json").json()
    assert js["method"] == "gradcam" and len(js["faces"]) == 1
    r = post(client, png(16, 12), "/v1/explain?method=vanilla")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert [r.headers[f"x-wildfer-{k}"] for k in ("faces", "method", "scale")] == ["1", "vanilla", "1"]
    assert [j.options for j in worker.jobs] == [{"method": "gradcam"}, {"method": "vanilla"}]


# ----------------------------------------------------------------------------- info, health, page


def test_models_reports_the_model_and_limits(mount):
    js = mount(FakeWorker()).get("/v1/models").json()
    assert js["model"]["name"] == "fake" and js["model"]["classes"] == ["happy", "sad"]
    assert js["detector"] == "nodetector" and js["limits"] == dataclasses.asdict(TINY)
    assert js["explain_methods"] == list(routes.EXPLAIN_METHODS)


def test_healthz_follows_the_worker(mount):
    r = mount(FakeWorker()).get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["uptime_s"] >= 5
    down = mount(FakeWorker(alive=False))
    assert down.get("/healthz").status_code == 503 and down.get("/healthz").json()["status"] == "down"
    assert down.head("/healthz").status_code == 503


def test_page_is_served_with_its_policy(mount):
    r = mount(FakeWorker()).get("/")
    assert r.status_code == 200 and r.headers["content-security-policy"] == pages.CSP
    assert r.headers["content-type"].startswith("text/html")


# ----------------------------------------------------------------------------- ServeConfig


@pytest.mark.parametrize("setting,fragment", [
    ({"timeout": 0}, "timeout=0: must be above 0"),
    ({"max_upload_mb": -1}, "max_upload_mb=-1"),
    ({"max_explain": 0}, "max_explain=0: must be at least 1"),
    ({"threads": 2.5}, "threads=2.5: must be an integer"),
    ({"max_queue": "many"}, "max_queue='many': must be an integer"),
    ({"work_pixels": float("nan")}, "work_pixels=nan"),
    ({"backend": "gpu"}, "backend='gpu': use auto, torch, onnx, int8"),
    ({"cors": [1]}, "cors: must be a list of strings"),
    ({"unsure_below": 1.5}, "unsure_below=1.5: must be at least 0 and at most 1"),
])
def test_serve_config_checks_every_declared_range(setting, fragment):
    from wildfer.errors import WildferError
    from wildfer.serve.app import create_app
    from wildfer.serve.config import ServeConfig

    with pytest.raises(WildferError, match=re.escape(fragment)):
        create_app(**setting)
    with pytest.raises(WildferError, match=re.escape(fragment)):
        ServeConfig(**setting).check()


def test_serve_config_is_what_the_app_uses():
    from wildfer.serve.app import create_app
    from wildfer.serve.config import ServeConfig

    cfg = ServeConfig(model="fast", timeout=30, max_explain=4, cors=["http://a.example"])
    app = create_app(config=cfg)
    assert app.state.config == cfg and app.state.limits.timeout_s == 30 and app.state.limits.max_explain == 4
    assert ServeConfig(**cfg.to_dict()) == cfg  # JSON-able round trip (the --workers processes read it)
    assert create_app(model="fast", timeout=30, max_explain=4, cors=["http://a.example"]).state.config == cfg
    with pytest.raises(TypeError):
        create_app(config=cfg, timeout=5)
    with pytest.raises(TypeError):
        create_app(bogus=1)
