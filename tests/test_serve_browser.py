"""End-to-end: the web page in real headless Chromium against a real server and model.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them); skips with that reason
when they are absent. Set ``WILDFER_SAVE_SCREENSHOT=1`` to also copy the screenshot to
``benchmarks/results/serve_page.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from wildfer.labels import FER2013_CLASSES
from wildfer.serve.app import create_app
from wildfer.serve.runner import ServerThread

from serve_helpers import real_recognizer

ROOT = Path(__file__).resolve().parent.parent
GROUP = "groups/dlib_2008_001322.jpg"
PORTRAIT = "kdef_frontal/AF01HAS.JPG"


def _binaries() -> tuple[str, str]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("headless browser test needs chromium and chromedriver "
                    "(Debian: apt-get install -y chromium chromium-driver)")
    return chrome, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    drv = _chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield drv
    drv.quit()


def _chromium(profile: Path, *extra: str):
    """Headless Chromium under chromedriver, with the page's console logged; ``extra`` flags."""
    chrome, driver_path = _binaries()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--force-device-scale-factor=1", f"--user-data-dir={profile}", *extra):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    return drv


@pytest.fixture(scope="module")
def recognizer():
    return real_recognizer()


@pytest.fixture(scope="module")
def server(recognizer):
    with ServerThread(create_app(recognizer, timeout=60)) as srv:
        yield srv


def _wait_state(browser, states=("done", "error"), timeout=60, attr="state"):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(f"return document.body.dataset.{attr}") in states)
    return browser.execute_script(f"return document.body.dataset.{attr}")


def _severe_logs(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_page_upload_shows_labelled_boxes(browser, server, recognizer, wild_dir, tmp_path):
    from selenium.webdriver.common.by import By

    photo = wild_dir / GROUP
    expected = recognizer.predict(photo)
    assert len(expected.faces) >= 2, "the group photo should have several faces"

    browser.get(server.url + "/")
    assert browser.title.startswith("wildfer")
    browser.find_element(By.ID, "file-input").send_keys(str(photo))
    assert _wait_state(browser) == "done", browser.find_element(By.ID, "status").text

    boxes = browser.find_elements(By.CSS_SELECTOR, "#boxes .face-box")
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#boxes .face-label")]
    cards = browser.find_elements(By.CSS_SELECTOR, "#faces .face-card")
    assert len(boxes) == len(labels) == len(cards) == len(expected.faces)
    # each label reads "<n> · <emotion> <percent>", the emotion is the model's
    for text, face in zip(labels, expected.faces):
        words = text.replace("·", " ").split()
        assert face.label in words, (text, face.label)
        assert any(w in FER2013_CLASSES for w in words)
        assert words[-1].endswith("%")
    # every box is drawn, non-empty, inside the photo, where the model found the face
    img = browser.find_element(By.ID, "photo").rect
    scale = img["width"] / expected.width
    for el, face in zip(boxes, expected.faces):
        r = el.rect
        assert r["width"] > 5 and r["height"] > 5
        assert img["x"] - 4 <= r["x"] and r["x"] + r["width"] <= img["x"] + img["width"] + 4
        assert abs((r["x"] - img["x"]) - face.box[0] * scale) <= 4  # border drawn inside the box
        assert abs(r["width"] - (face.box[2] - face.box[0]) * scale) <= 4
    # probability bars: one per class per face, the widest is the label
    for card, face in zip(cards, expected.faces):
        rows = card.find_elements(By.CSS_SELECTOR, ".prob")
        assert [r.get_attribute("data-emotion") for r in rows][0] == face.label
        assert len(rows) == len(FER2013_CLASSES)
    status = browser.find_element(By.ID, "status").text
    assert f"{len(expected.faces)} faces" in status

    shot = tmp_path / "serve_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("WILDFER_SAVE_SCREENSHOT"):
        out = ROOT / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / "serve_page.png")

    # the saliency overlay toggle fetches /v1/explain and shows it over the photo
    browser.find_element(By.ID, "saliency-toggle").click()
    assert _wait_state(browser, states=("gradcam", "error"), attr="saliency") == "gradcam"
    overlay = browser.find_element(By.ID, "saliency")
    assert overlay.is_displayed()
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) == expected.width
    browser.save_screenshot(str(tmp_path / "serve_page_saliency.png"))
    if os.environ.get("WILDFER_SAVE_SCREENSHOT"):
        shutil.copy(tmp_path / "serve_page_saliency.png", ROOT / "benchmarks" / "results" / "serve_page_saliency.png")
    browser.find_element(By.ID, "saliency-toggle").click()
    assert not overlay.is_displayed()
    # nothing blocked (the page's CSP allows only this server) and no script errors
    assert _severe_logs(browser) == []


@pytest.mark.parametrize("how", ["paste", "drop"])
def test_page_paste_and_drop(browser, server, wild_dir, how):
    """A photo pasted from the clipboard or dropped on the page goes through the same path."""
    import base64

    from selenium.webdriver.common.by import By

    b64 = base64.b64encode((wild_dir / PORTRAIT).read_bytes()).decode()
    browser.get(server.url + "/")
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "face.jpg", {type: "image/jpeg"}));
        const ev = arguments[1] === "paste"
            ? new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true})
            : new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true});
        (arguments[1] === "paste" ? document : document.getElementById("dropzone")).dispatchEvent(ev);
    """, b64, how)
    assert _wait_state(browser) == "done", browser.find_element(By.ID, "status").text
    labels = browser.find_elements(By.CSS_SELECTOR, "#boxes .face-label")
    assert len(labels) == 1 and labels[0].text.split()[0] in FER2013_CLASSES


def test_page_second_photo_and_bad_file(browser, server, wild_dir, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    browser.find_element(By.ID, "file-input").send_keys(str(wild_dir / PORTRAIT))
    assert _wait_state(browser) == "done"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#boxes .face-box")) == 1
    assert browser.find_element(By.ID, "result").get_attribute("data-faces") == "1"

    # a truncated JPEG: the server's 422 message appears, no boxes linger
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((wild_dir / PORTRAIT).read_bytes()[:2000])
    browser.find_element(By.ID, "file-input").send_keys(str(bad))
    assert _wait_state(browser) == "error"
    status = browser.find_element(By.ID, "status")
    assert "truncated" in status.text and "error" in status.get_attribute("class")
    assert browser.find_elements(By.CSS_SELECTOR, "#boxes .face-box") == []
    logs = [m for m in _severe_logs(browser) if "/v1/predict" not in m]  # the 422 itself is logged
    assert logs == []


# ----------------------------------------------------------------------------- live camera


@pytest.fixture(scope="module")
def camera_browser(tmp_path_factory, wild_dir):
    """Chromium whose camera is a fake one playing a clip of a real face (a KDEF portrait)."""
    from wildfer.wild.video import slideshow

    _binaries()  # skips first when there is no browser
    clip = slideshow([wild_dir / PORTRAIT], tmp_path_factory.mktemp("camera") / "face.y4m", fps=15, seconds=2)
    drv = _chromium(tmp_path_factory.mktemp("chromium-camera-profile"), "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}")
    yield drv
    drv.quit()


def _open_live(browser):
    """Open the page's camera (the fake one) and start the live view."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.ID, "webcam-button").click()
    WebDriverWait(browser, 30, poll_frequency=0.1).until(
        lambda d: d.execute_script("return document.getElementById('webcam-video').videoWidth") > 0)
    browser.find_element(By.ID, "live-button").click()


def test_live_camera_draws_labelled_boxes(camera_browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    b = camera_browser
    b.get(server.url + "/")
    _open_live(b)
    WebDriverWait(b, 90, poll_frequency=0.1).until(
        lambda d: int(d.execute_script("return document.body.dataset.liveFrames || '0'")) >= 8)
    assert b.execute_script("return document.body.dataset.live") == "running"
    assert int(b.execute_script("return document.body.dataset.liveFaces")) == 1
    # the overlay holds a drawn box and label: coloured, opaque pixels over the video
    drawn = b.execute_script("""
        const c = document.getElementById('live-overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 200) n++;
        return [n, c.width, c.height];""")
    assert drawn[0] > 500 and drawn[1] > 100, drawn
    stats = b.find_element(By.ID, "live-stats").text
    assert "frames/s" in stats and "ms from capture to label" in stats
    fps = float(b.execute_script("return document.body.dataset.liveFps"))
    latency = float(b.execute_script("return document.body.dataset.liveLatencyMs"))
    assert fps > 0 and latency > 0
    shot = tmp_path / "serve_live.png"
    assert b.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("WILDFER_SAVE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "benchmarks" / "results" / "serve_live.png")
    assert _severe_logs(b) == []
    # a hidden page stops the live view and the camera
    b.execute_script("Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
                     "document.dispatchEvent(new Event('visibilitychange'));")
    WebDriverWait(b, 10).until(lambda d: d.execute_script("return document.getElementById('webcam').hidden"))
    assert b.execute_script("return document.getElementById('webcam-video').srcObject") is None
    assert b.execute_script("return document.body.dataset.live") == "stopped"


def test_live_camera_degrades_to_still_photos(camera_browser, server):
    """When the server refuses the live frames, the live view stops with a message and the
    still-photo button stays."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    b = camera_browser
    b.get(server.url + "/")
    b.execute_script("""
        const real = window.fetch;
        window.fetch = (url, opts) => String(url).startsWith('/v1/live')
            ? Promise.resolve(new Response(JSON.stringify({detail: 'live frames are off here', error: 'off'}),
                                           {status: 403, headers: {'Content-Type': 'application/json'}}))
            : real(url, opts);""")
    _open_live(b)
    WebDriverWait(b, 30).until(lambda d: d.execute_script("return document.body.dataset.live") == "refused")
    status = b.find_element(By.ID, "status").text
    assert "live frames are off here" in status and "still photos" in status
    capture = b.find_element(By.ID, "capture-button")
    assert capture.is_displayed()
    capture.click()
    # the state is "error" from the refused live view until the still photo's answer comes
    assert _wait_state(b, states=("done",)) == "done", b.find_element(By.ID, "status").text
