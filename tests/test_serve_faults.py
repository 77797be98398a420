"""The service under hostile input: huge-pixel photos, piles of multipart parts, clients that
never finish their headers or leave mid-request, foreign Host headers; each through a real
uvicorn server on loopback.

Most tests use a stand-in recognizer (records what it is given, or blocks until told) so they
stay fast and can hold a request in progress on purpose; the bounded-size tests also run the
real built-in model.
"""

from __future__ import annotations

import io
import socket
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

from wildfer.labels import FER2013_CLASSES  # noqa: E402
from wildfer.serve.app import HostCheck, create_app  # noqa: E402
from wildfer.serve.runner import ServerThread  # noqa: E402
from wildfer.serve.uploads import MAX_PARTS  # noqa: E402

from serve_helpers import FakeResult, real_recognizer  # noqa: E402

KDEF = "kdef_frontal/AF01HAS.JPG"


# ----------------------------------------------------------------------------- stand-ins


class StandIn:
    """Follows the Recognizer contract. Records the shape of every image it is given;
    ``explain`` (what :func:`standin_explain` gives the server) waits for ``release`` (set by
    default), or runs ``passes`` forward passes of a tiny torch network when ``passes`` is set
    (counted in ``done``)."""

    class detector:  # noqa: N801
        name, thread_safe = "none", True

    def __init__(self, passes: int = 0, pass_s: float = 0.01):
        import torch

        self.classifier = type("C", (), {"name": "standin", "arch": "none", "labels": FER2013_CLASSES, "size": 48,
                                         "net": torch.nn.Linear(2, 2)})()
        self.shapes: list[tuple] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.passes, self.pass_s, self.done = passes, pass_s, 0

    def predict(self, image, bgr=False):
        self.shapes.append(image.shape)
        return FakeResult(image.shape[1], image.shape[0])

    def predict_batch(self, images):
        return [self.predict(i) for i in images]

    def explain(self, image, method="gradcam"):
        import torch

        self.shapes.append(image.shape)
        self.entered.set()
        self.release.wait(30)
        x = torch.zeros(1, 2)
        for _ in range(self.passes):
            self.classifier.net(x)
            self.done += 1
            time.sleep(self.pass_s)
        return FakeResult(image.shape[1], image.shape[0], method=method)


def standin_explain(recognizer, image, method="gradcam"):
    """``/v1/explain``'s work on a :class:`StandIn` (in place of :func:`wildfer.explain_photo`)."""
    return recognizer.explain(image, method=method)


def png(width: int, height: int, mode: str = "L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def post(client, data: bytes, url: str = "/v1/predict", ctype: str = "image/png", **kw):
    return client.post(url, files={"file": ("photo.png", data, ctype)}, **kw)


@pytest.fixture(scope="module")
def recognizer():
    return real_recognizer()


# ----------------------------------------------------------------------------- bounded image size


def test_huge_blank_png_is_explained_on_a_bounded_copy(recognizer):
    """A 50 KB blank 39-megapixel PNG used to cost ~14 s of CPU and 3.5 GB in the overlay; the
    server now works on a copy of at most explain_pixels (1 MP; predict: work_pixels, 4 MP)
    and says so."""
    from PIL import Image

    data = png(7800, 5000)
    assert len(data) < 100_000
    app = create_app(recognizer, timeout=60)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        r = post(c, data, "/v1/explain")
        assert r.status_code == 200, r.text
        w, h = Image.open(io.BytesIO(r.content)).size
        assert w * h <= 1_000_000 and abs(w / h - 7800 / 5000) < 0.01
        assert float(r.headers["x-wildfer-scale"]) == pytest.approx(w / 7800, abs=1e-3)
        js = post(c, data, "/v1/explain?format=json").json()
        assert (js["width"], js["height"], js["faces"]) == (7800, 5000, [])
        js = post(c, data).json()
        assert (js["width"], js["height"]) == (7800, 5000)
        assert js["scale"] == pytest.approx((4_000_000 / (7800 * 5000)) ** 0.5, abs=1e-3)


def test_large_photo_boxes_come_back_in_photo_pixels(recognizer, wild_dir):
    """A portrait upscaled 4x (1.7 MP) on a server working at 0.5 MP: the face is found on the
    downscaled copy and its box and landmarks are reported in the upload's pixels."""
    from PIL import Image

    path = wild_dir / KDEF
    if not path.exists():
        pytest.skip(f"KDEF photo missing: {path}")
    big = Image.open(path).convert("RGB")
    big = big.resize((big.width * 4, big.height * 4), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=92)
    app = create_app(recognizer, timeout=60, work_pixels=500_000, explain_pixels=500_000)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        r = post(c, buf.getvalue(), ctype="image/jpeg")
        js = r.json()
        assert r.status_code == 200 and (js["width"], js["height"]) == big.size and js["scale"] < 0.6
        ex = post(c, buf.getvalue(), "/v1/explain?format=json&method=vanilla", ctype="image/jpeg").json()
    ref = recognizer.predict(np.asarray(big)).faces
    assert len(js["faces"]) == len(ref) == 1 == len(ex["faces"])
    face = ref[0]
    width = face.box[2] - face.box[0]
    for got in (js["faces"][0], ex["faces"][0]):
        np.testing.assert_allclose(got["box"], face.box, atol=0.05 * width)
        np.testing.assert_allclose(got["landmarks"], face.landmarks, atol=0.05 * width)
    assert js["faces"][0]["label"] == face.label


def test_recognizer_never_sees_more_than_work_pixels():
    rec = StandIn()
    app = create_app(rec, timeout=30, work_pixels=200_000, explain_pixels=100_000, explain=standin_explain)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        assert post(c, png(3000, 2000)).status_code == 200
        assert post(c, png(300, 200)).status_code == 200
        assert post(c, png(3000, 2000, "RGB"), "/v1/explain?format=json").status_code == 200
    assert [s[0] * s[1] <= bound for s, bound in zip(rec.shapes, (200_000, 200_000, 100_000))] == [True] * 3
    assert rec.shapes[1][:2] == (200, 300)  # a photo under the bound is not touched


def _phone_jpeg(orientation: int = 1, size=(4032, 3024)) -> bytes:
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    img = Image.fromarray(noise).resize(size, Image.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def test_a_large_jpeg_is_decoded_reduced_to_the_work_copy():
    """A 12-megapixel JPEG against a 4-megapixel work copy: decoded at 1/2 (3 MP, at least
    MIN_WORK_SHARE of it) with its full size, after any EXIF quarter turn; whole when the
    reduced copy would be too small, for other formats, and when no minimum is given."""
    from wildfer.data.images import is_truncated
    from wildfer.serve.uploads import MIN_WORK_SHARE, decode_image, decode_photo, shrink_to

    data = _phone_jpeg()
    least = int(4_000_000 * MIN_WORK_SHARE)
    rgb, size = decode_photo(data, 40_000_000, least)
    assert rgb.shape == (1512, 2016, 3) and size == (4032, 3024)
    whole = decode_image(data, 40_000_000)
    assert whole.shape == (3024, 4032, 3)
    assert np.abs(shrink_to(whole, 1512 * 2016).astype(int) - rgb).mean() < 2  # the same picture
    assert decode_photo(data, 40_000_000, 4_000_000)[0].shape == (3024, 4032, 3)  # 1/2 keeps only 3 MP
    assert decode_photo(data, 40_000_000)[0].shape == (3024, 4032, 3)
    assert decode_photo(data, 40_000_000, 700_000)[0].shape == (756, 1008, 3)  # 1/4
    turned, size = decode_photo(_phone_jpeg(orientation=6), 40_000_000, least)
    assert turned.shape == (2016, 1512, 3) and size == (3024, 4032)
    rgb, size = decode_photo(png(4000, 3000), 40_000_000, least)
    assert rgb.shape == (3000, 4000, 3) and size == (4000, 3000)
    cut = data[: len(data) // 2] + b"\xff\xd9"  # ended early, with an end marker
    rgb, size = decode_photo(cut, 40_000_000, least)
    assert rgb.shape == (1512, 2016, 3) and is_truncated(rgb) and size == (4032, 3024)


def test_the_service_reports_a_reduced_decode_in_the_photos_pixels():
    rec = StandIn()
    app = create_app(rec, timeout=30)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        js = post(c, _phone_jpeg(orientation=6), ctype="image/jpeg").json()
    assert rec.shapes[0][:2] == (2016, 1512)
    assert (js["width"], js["height"], js["scale"]) == (3024, 4032, 0.5)


def test_work_copy_keeps_the_truncated_mark():
    from wildfer.data.images import TruncatedImage, is_truncated
    from wildfer.serve.uploads import shrink_to

    big = np.zeros((1000, 1500, 3), np.uint8)
    small = shrink_to(big.view(TruncatedImage), 150_000)
    assert small.shape == (316, 474, 3) and is_truncated(small)
    assert type(shrink_to(big, 150_000)) is np.ndarray and shrink_to(big, 2_000_000) is big


def test_explain_concurrency_cap_answers_503_with_retry_after():
    rec = StandIn()
    rec.release.clear()
    app = create_app(rec, timeout=30, max_explain=1, threads=2, explain=standin_explain)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=post(httpx.Client(base_url=srv.url, timeout=30),
                                                                 png(64, 48), "/v1/explain?format=json")))
        t.start()
        assert rec.entered.wait(10)
        r = post(c, png(64, 48), "/v1/explain?format=json")
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"] == "busy"
        assert post(c, png(64, 48)).status_code == 200  # the other endpoint has its own cap
        rec.release.set()
        t.join(30)
        assert first["r"].status_code == 200
        assert post(c, png(64, 48), "/v1/explain?format=json").status_code == 200  # the slot came back
        assert c.get("/v1/models").json()["limits"]["max_explain"] == 1


@pytest.mark.parametrize("how", ["client_gone", "time_limit"])
def test_abandoned_explanation_stops_running(how):
    """An explanation whose client closed the connection, or whose time limit passed, stops at
    its network's next forward pass instead of running to the end."""
    rec = StandIn(passes=600, pass_s=0.01)  # 6 s or more of work when nobody stops it
    limit = 1.5
    app = create_app(rec, timeout=limit if how == "time_limit" else 30, explain=standin_explain)
    with ServerThread(app) as srv:
        with httpx.Client(base_url=srv.url, timeout=limit if how == "client_gone" else 30) as c:
            if how == "client_gone":
                with pytest.raises(httpx.TimeoutException):
                    post(c, png(64, 48), "/v1/explain?format=json")
            else:
                assert post(c, png(64, 48), "/v1/explain?format=json").status_code == 504
        assert rec.entered.is_set()  # it was running when its request went away
        worker = app.state.worker
        t_end = time.monotonic() + 10
        while worker.abandoned < 1 and time.monotonic() < t_end:
            time.sleep(0.05)
        assert worker.abandoned == 1
        stopped_at = rec.done
        time.sleep(0.3)
        assert rec.done == stopped_at < 450
        with httpx.Client(base_url=srv.url, timeout=30) as c:  # the thread is free again
            rec.passes = 1
            assert post(c, png(64, 48), "/v1/explain?format=json").status_code == 200


# ----------------------------------------------------------------------------- multipart forms


def _many_parts(n: int, with_file: bool = False) -> tuple[bytes, str]:
    boundary = "x1b"
    part = "--{b}\r\nContent-Disposition: form-data; name=\"field{i}\"\r\n\r\n\r\n"
    body = "".join(part.format(b=boundary, i=i) for i in range(n))
    if with_file:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                 f"Content-Type: image/png\r\n\r\n")
    raw = body.encode() + (png(8, 8) + b"\r\n" if with_file else b"") + f"--{boundary}--\r\n".encode()
    return raw, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def standin_server():
    with ServerThread(create_app(StandIn(), timeout=30)) as srv:
        yield srv


@pytest.mark.parametrize("with_file", [False, True])
def test_many_part_form_is_refused_short(standin_server, with_file):
    body, ctype = _many_parts(20_000, with_file)
    with httpx.Client(base_url=standin_server.url, timeout=30) as c:
        r = c.post("/v1/predict", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 400 and r.json()["error"] == "too_many_parts", r.text[:300]
        assert len(r.content) < 300 and str(MAX_PARTS) in r.json()["detail"]
        assert c.get("/healthz").status_code == 200


def test_missing_field_message_names_a_few_fields(standin_server):
    body, ctype = _many_parts(MAX_PARTS)
    with httpx.Client(base_url=standin_server.url, timeout=30) as c:
        r = c.post("/v1/predict", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 422 and len(r.content) < 400
    assert "'field0'" in r.text and "'field15'" not in r.text and f"and {MAX_PARTS - 5} more" in r.text


def test_parsing_a_form_never_holds_up_other_requests(monkeypatch):
    """The body is parsed and decoded off the event loop: while one upload is stuck in the
    parser, /healthz still answers."""
    import wildfer.serve.routes as app_module

    entered, release = threading.Event(), threading.Event()
    real = app_module.extract_image_bytes

    def slow_extract(*args):
        entered.set()
        release.wait(20)
        return real(*args)

    monkeypatch.setattr(app_module, "extract_image_bytes", slow_extract)
    with ServerThread(create_app(StandIn(), timeout=30)) as srv:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=post(httpx.Client(base_url=srv.url, timeout=30), png(8, 8))))
        t.start()
        try:
            assert entered.wait(10)
            assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200
        finally:
            release.set()
            t.join(30)
        assert out["r"].status_code == 200


# ----------------------------------------------------------------------------- slow clients


@pytest.fixture(scope="module")
def strict_server():
    """A server that gives clients 1 s to send a request head."""
    with ServerThread(create_app(StandIn(), timeout=30), header_timeout=1.0) as srv:
        yield srv


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` within ``seconds`` (reads and drops anything it sends)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("head", [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
def test_incomplete_head_is_cut_off(strict_server, head):
    with socket.create_connection((strict_server.host, strict_server.port), timeout=5) as s:
        s.sendall(head)
        assert _closed_within(s, 5.0)


def test_trickled_head_is_cut_off(strict_server):
    """One header byte every 0.1 s keeps the connection busy but never completes the head."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    with socket.create_connection((strict_server.host, strict_server.port), timeout=5) as s:
        cut = False
        for i in range(len(head)):  # 20 s of trickling; the limit is 1 s
            try:
                s.sendall(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(4096) == b"":
                    cut = True
                    break
            except TimeoutError:
                pass
        assert cut and i < 60


def test_keep_alive_connection_gets_the_same_head_limit(strict_server):
    with socket.create_connection((strict_server.host, strict_server.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.settimeout(5)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the next head, never finished
        assert _closed_within(s, 5.0)
    assert httpx.get(strict_server.url + "/healthz", timeout=5).status_code == 200


# ----------------------------------------------------------------------------- Host header


def test_foreign_host_header_is_refused(standin_server):
    port = standin_server.port
    with httpx.Client(base_url=standin_server.url, timeout=30) as c:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "LOCALHOST."):
            assert c.get("/v1/models", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "192.168.1.20"):
            r = c.get("/v1/models", headers={"Host": host})
            assert r.status_code == 400 and r.json()["error"] == "bad_host" and len(r.content) < 300, host
        r = post(c, png(8, 8), headers={"Host": "rebind." + "x" * 500})
        assert r.status_code == 400 and len(r.content) < 300


def test_allowed_hosts_option():
    app = create_app(StandIn(), timeout=30, allowed_hosts=["faces.lan", "0.0.0.0"])
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        for host in ("faces.lan:8000", "FACES.LAN", "192.168.1.20:8000", "127.0.0.1"):
            assert c.get("/healthz", headers={"Host": host}).status_code == 200, host
        for host in ("evil.faces.lan", "[fe80::1]:8000", "evil.example"):
            assert c.get("/healthz", headers={"Host": host}).status_code == 400, host
    everything = HostCheck(None, ["*"])
    assert everything.allows("anything.example") and HostCheck(None, ["::"]).allows("[fe80::1]:80")


# ----------------------------------------------------------------------------- the command, HEAD


def test_serve_on_a_busy_port_fails_before_loading_the_model(cli, monkeypatch):
    import wildfer.serve.app as app_module

    loaded = []
    monkeypatch.setattr(app_module, "load_recognizer", lambda *a, **k: loaded.append(a) or StandIn())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = cli(["serve", "--port", str(port)])
    assert code == 2 and loaded == []
    assert "error" in out and f"127.0.0.1:{port}" in out and "in use" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_head_answers_like_get(standin_server):
    with httpx.Client(base_url=standin_server.url, timeout=30) as c:
        for url in ("/", "/healthz", "/static/app.js"):
            get, head = c.get(url), c.head(url)
            assert head.status_code == get.status_code == 200, url
            assert head.headers["content-type"] == get.headers["content-type"] and head.content == b""


# ----------------------------------------------------------------------------- request framing


def _exchange(srv, raw: bytes, wait_s: float = 3.0) -> bytes:
    """Send ``raw`` on a fresh connection and read until the server closes it (or ``wait_s``)."""
    host, port = srv.url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(raw)
        got = b""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
    return got


def test_content_length_with_transfer_encoding_is_refused_and_closed(standin_server):
    """RFC 9112 6.3: a request with both Content-Length and Transfer-Encoding may be smuggling
    a second request; it is answered once, with 400, and the connection is closed."""
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    raw = (b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" % len(body)) + body
    got = _exchange(standin_server, raw)
    assert got.startswith(b"HTTP/1.1 400"), got[:200]
    assert got.count(b"HTTP/1.1 ") == 1, got  # the smuggled request is never answered


def test_request_heads_over_the_limit_are_refused(standin_server):
    from wildfer.serve.runner import MAX_HEAD_BYTES

    for size, ok in ((MAX_HEAD_BYTES // 2, True), (MAX_HEAD_BYTES + 1024, False), (4 * MAX_HEAD_BYTES, False)):
        raw = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * size + b"\r\n"
               b"Connection: close\r\n\r\n")
        got = _exchange(standin_server, raw)
        assert got.startswith(b"HTTP/1.1 200" if ok else b"HTTP/1.1 431"), (size, got[:200])


# ----------------------------------------------------------------------------- the live camera's frames


def test_live_frames_are_bounded_per_client():
    """/v1/live: one frame at a time and at most LIVE_MAX_FPS a second per client (429 at
    once, never queued), frames over 1280 x 720 refused (413)."""
    from wildfer.serve.live import LIVE_MAX_FPS

    standin = StandIn()
    standin.release.clear()  # nothing is answered until released
    slow = type("Slow", (), {"detector": StandIn.detector, "classifier": standin.classifier,
                             "predict": lambda self, im, bgr=False: (standin.release.wait(30), standin.predict(im))[1],
                             "predict_batch": lambda self, ims: [self.predict(i) for i in ims]})()
    frame = png(640, 480, "RGB")
    with ServerThread(create_app(slow, timeout=30)) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        out = {}
        t = threading.Thread(target=lambda: out.update(r=c.post("/v1/live", content=frame,
                                                                 headers={"Content-Type": "image/png"})))
        t.start()
        time.sleep(0.5)  # the first frame is in progress
        with httpx.Client(base_url=srv.url, timeout=30) as c2:
            t0 = time.perf_counter()
            busy = c2.post("/v1/live", content=frame, headers={"Content-Type": "image/png"})
            assert busy.status_code == 429 and busy.json()["error"] == "busy" and time.perf_counter() - t0 < 2
            standin.release.set()
            t.join(30)
            first = out["r"]
            assert first.status_code == 200, first.text
            assert set(first.json()) == {"width", "height", "faces", "timings_ms"} and first.json()["width"] == 640
            assert c2.post("/v1/live", content=frame, headers={"Content-Type": "image/png"}).status_code == 200
            too_soon = c2.post("/v1/live", content=frame, headers={"Content-Type": "image/png"})  # at once after it
            assert too_soon.status_code == 429 and str(int(LIVE_MAX_FPS)) in too_soon.json()["detail"]
            time.sleep(1.5 / LIVE_MAX_FPS)
            assert c2.post("/v1/live", content=frame, headers={"Content-Type": "image/png"}).status_code == 200
            time.sleep(1.5 / LIVE_MAX_FPS)
            big = c2.post("/v1/live", content=png(1920, 1080), headers={"Content-Type": "image/png"})
            assert big.status_code == 413, big.text
            assert c2.get("/healthz").status_code == 200
