"""The HTTP service through a real uvicorn server on loopback.

The main server runs the real :class:`wildfer.wild.Recognizer` with the built-in default
model on real photos (KDEF portraits, group photos); a few tests use a deliberately slow
stand-in recognizer to exercise the time limit (504) and the bounded queue (503), which a
fast real model cannot trigger on purpose.
"""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

from wildfer import explain_photo  # noqa: E402
from wildfer.labels import FER2013_CLASSES  # noqa: E402
from wildfer.serve.app import create_app  # noqa: E402
from wildfer.serve.runner import ServerProcess, ServerThread  # noqa: E402
from wildfer.serve.uploads import UploadError, decode_image, extract_image_bytes  # noqa: E402
from wildfer.serve.worker import InferenceWorker  # noqa: E402

from serve_helpers import real_recognizer  # noqa: E402

#: A reference to another host: src=/href= attributes, CSS url()/@import, fetch()/import.
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import|"""
                      r"""fetch\(\s*["'`](?:https?:)?//|import\s*\(?\s*["'](?:https?:)?//""", re.I)
HAPPY = ["kdef_frontal/AF01HAS.JPG", "kdef_frontal/AM05HAS.JPG", "kdef_frontal/AF10HAS.JPG"]
GROUP = "groups/dlib_2008_001322.jpg"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def recognizer():
    return real_recognizer()


@pytest.fixture(scope="module")
def server(recognizer):
    """The real model behind a real server; small limits so the limit tests stay light."""
    app = create_app(recognizer, max_upload_mb=2, max_pixels=4_000_000, timeout=60)
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def kdef(wild_dir) -> Path:
    p = wild_dir / HAPPY[0]
    if not p.exists():
        pytest.skip(f"KDEF photo missing: {p}")
    return p


def jpeg_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def post_file(client, data: bytes, ctype: str = "image/jpeg", url: str = "/v1/predict", name: str = "photo.jpg"):
    return client.post(url, files={"file": (name, data, ctype)})


# ----------------------------------------------------------------------------- predict


def check_result(js: dict, width: int, height: int) -> None:
    assert js["width"] == width and js["height"] == height
    for f in js["faces"]:
        left, top, right, bottom = f["box"]
        assert -0.05 * width <= left < right <= 1.05 * width
        assert -0.05 * height <= top < bottom <= 1.05 * height
        assert set(f["probabilities"]) == set(FER2013_CLASSES)
        assert sum(f["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert f["label"] == max(f["probabilities"], key=f["probabilities"].get)
        first, second = f["top2"]
        assert first == {"label": f["label"], "probability": f["probabilities"][f["label"]]}
        assert second["label"] != f["label"] and second["probability"] == f["probabilities"][second["label"]]
        assert second["probability"] == max(v for c, v in f["probabilities"].items() if c != f["label"])
        assert 0.0 <= f["score"] <= 1.0
        if f["landmarks"] is not None:
            assert np.asarray(f["landmarks"]).shape == (5, 2)
    t = js["timings_ms"]
    for k in ("upload", "decode", "queue", "server_total"):
        assert k in t and t[k] >= 0
    assert t["server_total"] >= t["decode"]


def test_predict_kdef_portrait(client, recognizer, kdef):
    data = jpeg_bytes(kdef)
    r = post_file(client, data)
    assert r.status_code == 200, r.text
    js = r.json()
    check_result(js, 281, 381)
    assert len(js["faces"]) == 1
    (left, top, right, bottom) = js["faces"][0]["box"]
    assert (right - left) * (bottom - top) > 0.05 * 281 * 381  # a portrait's face is not tiny
    # the server answers exactly what the library answers for the same photo
    ref = recognizer.predict(kdef).to_dict()
    assert len(ref["faces"]) == 1
    np.testing.assert_allclose(js["faces"][0]["box"], ref["faces"][0]["box"], atol=1e-3)
    for c in FER2013_CLASSES:
        assert js["faces"][0]["probabilities"][c] == pytest.approx(ref["faces"][0]["probabilities"][c], abs=1e-5)
    assert [t["label"] for t in js["faces"][0]["top2"]] == [t["label"] for t in ref["faces"][0]["top2"]]
    assert js["model"] == "default"


def test_predict_happy_portraits_read_happy(client, wild_dir):
    labels = []
    for rel in HAPPY:
        r = post_file(client, jpeg_bytes(wild_dir / rel))
        assert r.status_code == 200, r.text
        labels.append(r.json()["faces"][0]["label"])
    assert labels.count("happy") >= 2, labels


def test_predict_raw_body_equals_multipart(client, kdef):
    data = jpeg_bytes(kdef)
    a = post_file(client, data).json()
    b = client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"}).json()
    c = client.post("/v1/predict", content=data, headers={"Content-Type": "application/octet-stream"}).json()
    assert a["faces"] == b["faces"] == c["faces"]


def test_predict_group_photo(client, recognizer, wild_dir):
    path = wild_dir / GROUP
    r = post_file(client, jpeg_bytes(path))
    assert r.status_code == 200, r.text
    js = r.json()
    ref = recognizer.predict(path)
    check_result(js, ref.width, ref.height)
    assert len(js["faces"]) == len(ref.faces) >= 2
    # reading order: the boxes are sorted as the library sorts them
    assert [f["label"] for f in js["faces"]] == [f.label for f in ref.faces]


def test_predict_png_and_grayscale(client, kdef):
    from PIL import Image

    buf = io.BytesIO()
    Image.open(kdef).convert("L").save(buf, format="PNG")
    r = post_file(client, buf.getvalue(), "image/png", name="gray.png")
    assert r.status_code == 200, r.text
    assert r.json()["width"] == 281 and len(r.json()["faces"]) == 1


def test_predict_no_face(client):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (40, 120, 200)).save(buf, format="JPEG")
    r = post_file(client, buf.getvalue())
    assert r.status_code == 200
    assert r.json()["faces"] == [] and r.json()["width"] == 320


# ----------------------------------------------------------------------------- limits and errors


def test_oversized_upload_413(client, kdef):
    big = b"\xff\xd8" + os.urandom(3 * 1024 * 1024)  # over the 2 MB limit of this server
    r = post_file(client, big)
    assert r.status_code == 413
    assert "too large" in r.json()["detail"] and "2.0 MB" in r.json()["detail"]


def test_oversized_streamed_body_without_content_length_413(client):
    def chunks():
        for _ in range(40):
            yield b"\x00" * 100_000

    r = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 413


def test_decompression_bomb_413(client):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (3000, 2000)).save(buf, format="PNG")  # 6 MP > this server's 4 MP, ~ 10 KB file
    assert len(buf.getvalue()) < 100_000
    r = post_file(client, buf.getvalue(), "image/png", name="bomb.png")
    assert r.status_code == 413
    assert "6.0 MP" in r.json()["detail"]


@pytest.mark.parametrize("ctype", ["text/plain", "application/json", "application/x-www-form-urlencoded"])
def test_text_upload_415(client, ctype):
    r = post_file(client, b"hello, I am not a photo\n", ctype, name="notes.txt")
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported_media_type" and ctype in r.json()["detail"]
    r = client.post("/v1/predict", content=b"hello", headers={"Content-Type": ctype})
    assert r.status_code == 415


def test_text_labelled_as_image_422(client):
    r = post_file(client, b"hello, I am not a photo\n", "image/jpeg")
    assert r.status_code == 422
    assert "not an image" in r.json()["detail"]


def test_truncated_jpeg_422(client, kdef):
    data = jpeg_bytes(kdef)
    r = post_file(client, data[: len(data) // 3])
    assert r.status_code == 422
    assert "truncated" in r.json()["detail"]


def test_empty_and_missing_field_422(client, kdef):
    assert post_file(client, b"").status_code == 422
    r = client.post("/v1/predict", files={"photo": ("a.jpg", jpeg_bytes(kdef), "image/jpeg")})
    assert r.status_code == 422 and "'file'" in r.json()["detail"] and "'photo'" in r.json()["detail"]


def test_server_keeps_serving_after_bad_requests(client, kdef):
    data = jpeg_bytes(kdef)
    for bad in (data[:500], b"junk", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50):
        assert post_file(client, bad).status_code == 422
    assert post_file(client, b"x" * (3 << 20)).status_code == 413
    r = post_file(client, data)
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"


def test_concurrent_requests_all_answered(client, wild_dir, server):
    paths = [wild_dir / p for p in HAPPY] * 4
    results = [None] * len(paths)

    def go(i):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            results[i] = post_file(c, jpeg_bytes(paths[i]))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None and r.status_code == 200 for r in results)
    # batched or not, each photo gets its own answer
    first = {p: None for p in HAPPY}
    for p, r in zip(paths, results):
        faces = r.json()["faces"]
        key = p.name
        if first.get(key) is None:
            first[key] = faces
        assert faces == first[key]


# ----------------------------------------------------------------------------- explain, models, page


def test_explain_png(client, recognizer, kdef):
    from PIL import Image

    r = post_file(client, jpeg_bytes(kdef), url="/v1/explain")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert int(r.headers["x-wildfer-faces"]) == 1
    img = np.asarray(Image.open(io.BytesIO(r.content)), dtype=np.int16)
    assert img.shape == (381, 281, 3)
    # the library's own Grad-CAM overlay of the same photo, pixel for pixel
    ex = explain_photo(recognizer, kdef, method="gradcam")
    ref = np.asarray(ex.overlay(), dtype=np.int16)
    assert np.abs(img - ref).max() <= 1
    # gradients (never all zero, unlike Grad-CAM's ReLU): a heat map over the face, not the plain photo
    r = post_file(client, jpeg_bytes(kdef), url="/v1/explain?method=vanilla")
    assert r.status_code == 200 and r.headers["x-wildfer-method"] == "vanilla"
    img = np.asarray(Image.open(io.BytesIO(r.content)), dtype=np.int16)
    orig = np.asarray(Image.open(kdef).convert("RGB"), dtype=np.int16)
    left, top, right, bottom = (int(round(v)) for v in ex.faces[0].box)
    assert np.abs(img - orig)[top + 3:bottom - 3, left + 3:right - 3].mean() > 3.0


def test_explain_json_and_bad_method(client, kdef):
    r = post_file(client, jpeg_bytes(kdef), url="/v1/explain?format=json&method=vanilla")
    assert r.status_code == 200, r.text
    js = r.json()
    assert js["method"] == "vanilla" and len(js["faces"]) == 1
    assert js["faces"][0]["label"] in FER2013_CLASSES
    assert js["faces"][0]["top2"][0]["label"] == js["faces"][0]["label"] and len(js["faces"][0]["top2"]) == 2
    r = post_file(client, jpeg_bytes(kdef), url="/v1/explain?method=astrology")
    assert r.status_code == 422


def test_models_and_health(client):
    m = client.get("/v1/models").json()
    assert m["model"]["name"] == "default" and m["model"]["arch"]
    assert m["model"]["classes"] == list(FER2013_CLASSES)
    assert m["detector"] == "yunet"
    assert "gradcam" in m["explain_methods"] and m["limits"]["max_upload_bytes"] == 2 * 1024 * 1024
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"


def test_openapi_docs_and_page_are_offline(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/explain", "/v1/models", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    for url in ("/", "/docs", "/static/app.js", "/static/docs.js", "/static/style.css", "/favicon.svg"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert not EXTERNAL.findall(r.text), (url, EXTERNAL.findall(r.text))
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'id="file-input"' in page.text
    # client paths never reach the file system
    for url in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/index.html/../../uploads.py", "/etc/passwd"):
        assert client.get(url).status_code == 404


def test_app_flags_unsure_faces_of_the_model_it_loads(kdef):
    """``unsure_below`` (``wildfer serve --unsure-below``) reaches the recognizer the app loads:
    a face less sure than it carries the flag ``unsure``, with its label and probabilities."""
    for threshold, flagged in ((1.0, True), (0.0, False)):
        with ServerThread(create_app(model="fast", unsure_below=threshold)) as srv, \
                httpx.Client(base_url=srv.url, timeout=60) as c:
            face = post_file(c, jpeg_bytes(kdef)).json()["faces"][0]
            assert ("unsure" in face["flags"]) is flagged and face["label"] == face["top2"][0]["label"]


def test_app_loads_its_own_model_at_startup(recognizer, kdef):
    """create_app(model=...) without a recognizer loads it once in the lifespan (the path of
    `wildfer serve --workers N`)."""
    with ServerThread(create_app(model="default", detector="yunet")) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        m = c.get("/v1/models").json()
        assert m["model"]["name"] == "default" and m["detector"] == "yunet"
        assert m["model"]["backend"] == "onnx"  # onnxruntime is installed here
        r = post_file(c, jpeg_bytes(kdef))
        assert r.status_code == 200 and len(r.json()["faces"]) == 1
        # onnxruntime answers what torch answers (float rounding apart)
        ref = recognizer.predict(kdef).faces[0]
        face = r.json()["faces"][0]
        assert face["box"] == [round(v, 1) for v in ref.box] and face["label"] == ref.label
        for c_ in FER2013_CLASSES:
            assert face["probabilities"][c_] == pytest.approx(ref.probs[c_], abs=1e-4)
        # saliency maps still come from the torch network
        assert c.post("/v1/explain", files={"file": ("a.jpg", jpeg_bytes(kdef), "image/jpeg")}).status_code == 200


def test_load_recognizer_backends():
    from wildfer.errors import ModelError
    from wildfer.serve.app import load_recognizer

    real_recognizer()  # skips like the others when the weights are absent
    assert load_recognizer("default", backend="torch").classifier.backend == "torch"
    assert load_recognizer("default", backend="onnx").classifier.backend == "onnx"
    int8 = load_recognizer("default", backend="int8", compute_threads=1).classifier
    assert int8.backend == "int8" and int8.device == "cpu"
    with pytest.raises(ModelError, match="CPU only"):
        load_recognizer("default", backend="int8", device="cuda")
    pipeline = load_recognizer(compute_threads=1).classifier  # wild_ensemble: wild int8 beside wild_mfn float
    assert pipeline.backend == "mixed" and pipeline.device == "cpu"
    assert pipeline.member_backends == {"wild": "int8", "wild_mfn": "onnx"}
    assert load_recognizer(backend="onnx").classifier.backend == "onnx"
    with pytest.raises(ModelError, match="unknown backend"):
        load_recognizer("default", backend="tensorflow")


def test_cors_off_by_default(client):
    r = client.options("/v1/predict", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/v1/models", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# ----------------------------------------------------------------------------- time limit and queue


@dataclass
class _Res:
    width: int
    height: int
    faces: list = field(default_factory=list)

    def to_dict(self):
        return {"width": self.width, "height": self.height, "mode": "detect", "faces": [], "timings_ms": {}}


class SlowRecognizer:
    """Follows the Recognizer contract, but takes ``delay`` seconds per call."""

    class classifier:  # noqa: N801
        name, arch, labels, size = "slow", "none", FER2013_CLASSES, 48

    class detector:  # noqa: N801
        name = "none"

    def __init__(self, delay: float):
        self.delay = delay
        self.calls = 0

    def predict(self, image, bgr=False):
        self.calls += 1
        time.sleep(self.delay)
        return _Res(image.shape[1], image.shape[0])

    def predict_batch(self, images):
        return [self.predict(i) for i in images]


def small_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(buf, format="JPEG")
    return buf.getvalue()


def test_time_limit_504_then_serves_again():
    rec = SlowRecognizer(delay=1.5)
    with ServerThread(create_app(rec, timeout=0.5)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        t0 = time.monotonic()
        r = post_file(c, small_jpeg())
        assert r.status_code == 504 and "0.5 s" in r.json()["detail"]
        assert time.monotonic() - t0 < 1.4  # answered at the limit, not after the slow call
        assert c.get("/healthz").status_code == 200
        rec.delay = 0.0
        time.sleep(1.2)  # let the abandoned call finish
        r = post_file(c, small_jpeg())
        assert r.status_code == 200 and r.json()["width"] == 64


def test_full_queue_503():
    rec = SlowRecognizer(delay=0.6)
    app = create_app(rec, timeout=20, max_queue=1, max_batch=1)
    codes = []
    with ServerThread(app) as srv:
        def go():
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                codes.append(post_file(c, small_jpeg()).status_code)

        threads = [threading.Thread(target=go) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert post_file(c, small_jpeg()).status_code == 200
    assert sorted(set(codes)) == [200, 503] and len(codes) == 5
    assert rec.calls == codes.count(200) + 1


def test_cors_when_asked():
    app = create_app(SlowRecognizer(0.0), cors=["http://kiosk.local"])
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.options("/v1/predict", headers={"Origin": "http://kiosk.local", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://kiosk.local"
        r = c.options("/v1/predict", headers={"Origin": "http://other.local", "Access-Control-Request-Method": "POST"})
        assert r.headers.get("access-control-allow-origin") != "http://other.local"


# ----------------------------------------------------------------------------- pieces


def test_worker_batches_waiting_predictions():
    gate = threading.Event()
    sizes = []

    class Rec:
        def predict(self, image):
            gate.wait(10)
            sizes.append(1)
            return image.sum()

        def predict_batch(self, images):
            sizes.append(len(images))
            return [i.sum() for i in images]

    w = InferenceWorker(Rec(), max_batch=3, max_queue=10).start()
    deadline = time.monotonic() + 30
    jobs = [w.submit("predict", np.full((2, 2, 3), 0, np.uint8), deadline)]
    time.sleep(0.2)  # the first job is now running (blocked on the gate)
    jobs += [w.submit("predict", np.full((2, 2, 3), i, np.uint8), deadline) for i in range(1, 6)]
    gate.set()
    out = [j.future.result(10) for j in jobs]
    w.stop()
    assert out == [12 * i for i in range(6)]
    assert sizes == [1, 3, 2]


def test_jpeg_fast_path_decodes_like_pillow(kdef):
    """Uploaded JPEGs go through OpenCV; the pixels must be Pillow's (the library's reader),
    EXIF orientation included; files the fast path does not take still decode or fail clearly."""
    from PIL import Image

    from wildfer.data.images import read_image

    src = Image.open(kdef).convert("RGB")
    for orientation in range(1, 9):
        for mode, kw in (("RGB", {}), ("L", {}), ("RGB", {"progressive": True}), ("RGB", {"subsampling": 0})):
            buf = io.BytesIO()
            exif = Image.Exif()
            exif[0x0112] = orientation
            src.convert(mode).save(buf, format="JPEG", exif=exif.tobytes(), quality=90, **kw)
            data = buf.getvalue()
            got, ref = decode_image(data, 10_000_000), read_image(data)
            assert got.dtype == np.uint8 and got.shape == ref.shape, (orientation, mode, kw)
            assert np.array_equal(got, ref), (orientation, mode, kw)
    data = jpeg_bytes(kdef)
    assert np.array_equal(decode_image(data + b"trailing bytes", 10_000_000), read_image(data))
    buf = io.BytesIO()
    src.convert("CMYK").save(buf, format="JPEG")
    assert np.array_equal(decode_image(buf.getvalue(), 10_000_000), read_image(buf.getvalue()))
    with pytest.raises(UploadError) as e:
        decode_image(data[: len(data) // 2], 10_000_000)
    assert e.value.status == 422 and "truncated" in e.value.message
    with pytest.raises(UploadError) as e:
        decode_image(data, 50_000)
    assert e.value.status == 413


def test_worker_threads_run_photos_at_once():
    """With threads=2, two photos are in the recognizer at the same time (a barrier that only
    two concurrent calls pass); a detector not marked thread-safe gets one thread."""
    barrier = threading.Barrier(2, timeout=20)

    class Det:
        name, thread_safe = "safe", True

    class Rec:
        detector = Det()

        def predict(self, image):
            barrier.wait()
            return int(image.sum())

        def predict_batch(self, images):
            return [self.predict(i) for i in images]

    w = InferenceWorker(Rec(), max_batch=1, max_queue=10, threads=2).start()
    assert w.threads == 2 and w.alive
    deadline = time.monotonic() + 30
    jobs = [w.submit("predict", np.full((2, 2, 3), i, np.uint8), deadline) for i in (1, 2, 3, 4)]
    assert [j.future.result(30) for j in jobs] == [12, 24, 36, 48]
    assert w.completed == 4 and w.cpu_s >= 0
    w.stop()
    assert not w.alive

    class Unsafe(Rec):
        detector = type("D", (), {"name": "haar"})()

    assert InferenceWorker(Unsafe(), threads=4).threads == 1


def test_multipart_parsing_in_memory():
    req = httpx.Request("POST", "http://x/", files={"file": ("a.jpg", b"\xff\xd8\xff" + b"\x00" * 10, "image/jpeg")},
                        data={"note": "hi"})
    body = req.read()
    assert extract_image_bytes(body, req.headers["content-type"], 1000) == b"\xff\xd8\xff" + b"\x00" * 10
    with pytest.raises(UploadError) as e:
        extract_image_bytes(body, req.headers["content-type"], 5)
    assert e.value.status == 413
    with pytest.raises(UploadError) as e:
        extract_image_bytes(body, "multipart/form-data", 1000)
    assert e.value.status == 400


# ----------------------------------------------------------------------------- the command


def test_wildfer_serve_command(recognizer, kdef):
    """`wildfer serve` starts, binds loopback, and answers curl-style multipart uploads."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with ServerProcess(["--log-level", "warning"], env=env) as srv:
        r = httpx.post(srv.url + "/v1/predict", files={"file": ("photo.jpg", kdef.read_bytes(), "image/jpeg")}, timeout=30)
        assert r.status_code == 200 and len(r.json()["faces"]) == 1
        with socket.socket() as s:  # bound to 127.0.0.1 only: 127.0.0.2 is another address
            assert s.connect_ex(("127.0.0.2", srv.port)) != 0
        m = httpx.get(srv.url + "/v1/models").json()
        # the pipeline model's default: wild on its int8 graph, wild_mfn on its float one
        assert m["model"]["backend"] == "mixed"
        assert m["model"]["member_backends"] == {"wild": "int8", "wild_mfn": "onnx"}
        h = httpx.get(srv.url + "/healthz").json()
        assert h["threads"] == (os.cpu_count() or 1) and h["completed"] == 1 and h["inference_cpu_s"] > 0


def test_wildfer_serve_bad_model_is_one_line(cli):
    real_recognizer()  # the error comes from the Recognizer; skip with the same reason if absent
    code, out = cli(["serve", "--model", "/nonexistent/model.pt"])
    assert code == 2
    assert "error" in out and "Traceback" not in out
    code, out = cli(["serve", "--backend", "tensorflow"])
    assert code == 2 and "unknown backend" in out and "Traceback" not in out


def test_ensemble_server_offers_no_gradcam_and_explains_with_gradients(kdef):
    """An ensemble (here two tiny random nets with flip TTA) has no single layer for Grad-CAM:
    /v1/models leaves it out (the page drops it from its menu), /v1/explain falls back to the
    first method it has, and an explicit Grad-CAM request is a 422 that says why."""
    import torch

    from wildfer.models import create_model
    from wildfer.models.ensemble import ensemble_classifier
    from wildfer.models.loader import Classifier
    from wildfer.wild import Recognizer

    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(Classifier(create_model("shallow", num_filters=4, hidden=16).eval(), name=f"s{seed}",
                                  arch="shallow"))
    rec = Recognizer(model=ensemble_classifier(members, tta="flip", name="tiny_ensemble"), detector="yunet")
    with ServerThread(create_app(rec, timeout=60)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        m = c.get("/v1/models").json()
        assert m["model"]["arch"] == "ensemble"
        assert m["explain_methods"] == ["vanilla", "smoothgrad", "ig", "occlusion"]
        r = post_file(c, jpeg_bytes(kdef), url="/v1/explain?format=json")
        assert r.status_code == 200, r.text
        assert r.json()["method"] == "vanilla" and len(r.json()["faces"]) == 1
        r = post_file(c, jpeg_bytes(kdef), url="/v1/explain?method=gradcam")
        assert r.status_code == 422 and "ensemble" in r.text
