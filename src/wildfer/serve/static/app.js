// wildfer page: choose / drop / paste / capture a photo, POST it to /v1/predict, draw the
// faces (boxes, labels, probability bars) and, on request, the /v1/explain saliency overlay.
// Plain JavaScript, no library, no network beyond this server.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const el = {
    body: document.body,
    dropzone: $("dropzone"),
    fileInput: $("file-input"),
    webcamButton: $("webcam-button"),
    webcam: $("webcam"),
    video: $("webcam-video"),
    capture: $("capture-button"),
    webcamClose: $("webcam-close"),
    liveButton: $("live-button"),
    liveOverlay: $("live-overlay"),
    liveStats: $("live-stats"),
    result: $("result"),
    status: $("status"),
    toolbar: $("toolbar"),
    stage: $("stage"),
    photo: $("photo"),
    saliency: $("saliency"),
    boxes: $("boxes"),
    faces: $("faces"),
    timings: $("timings"),
    saliencyToggle: $("saliency-toggle"),
    saliencyMethod: $("saliency-method"),
    boxesToggle: $("boxes-toggle"),
    modelInfo: $("model-info"),
    limitHint: $("limit-hint"),
  };

  let current = null;      // {blob, result, overlays: {method: objectURL}}
  let photoURL = null;
  let requestSeq = 0;      // answers to older requests are ignored
  let stream = null;
  let maxUpload = 0;

  // ------------------------------------------------------------------ helpers
  function setState(state, message, isError) {
    el.body.dataset.state = state;
    el.status.textContent = message;
    el.status.classList.toggle("error", !!isError);
  }

  function pct(p) {
    return (100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1) + "%";
  }

  function emoClass(label) {
    return "emo-" + String(label).toLowerCase().replace(/[^a-z]/g, "");
  }

  async function errorMessage(resp) {
    try {
      const j = await resp.json();
      if (typeof j.detail === "string") return j.detail;
      if (Array.isArray(j.detail)) return j.detail.map((d) => d.msg).join("; ");
    } catch (e) { /* not JSON */ }
    return "the server answered " + resp.status + " " + resp.statusText;
  }

  function post(url, blob) {
    const form = new FormData();
    form.append("file", blob, "photo");
    return fetch(url, { method: "POST", body: form });
  }

  function clearOverlays() {
    if (current) Object.values(current.overlays).forEach((u) => URL.revokeObjectURL(u));
    el.saliency.hidden = true;
    el.saliency.removeAttribute("src");
  }

  // ------------------------------------------------------------------ predict
  async function handleBlob(blob) {
    if (!blob) return;
    if (blob.type && !blob.type.startsWith("image/")) {
      setState("error", "That is not an image (" + blob.type + "). Choose a photo.", true);
      return;
    }
    if (maxUpload && blob.size > maxUpload) {
      setState("error", "That photo is " + (blob.size / 1048576).toFixed(1) + " MB; the limit is " +
        (maxUpload / 1048576).toFixed(0) + " MB.", true);
      return;
    }
    const seq = ++requestSeq;
    clearOverlays();
    current = { blob: blob, result: null, overlays: {} };
    el.saliencyToggle.checked = false;
    if (photoURL) URL.revokeObjectURL(photoURL);
    photoURL = URL.createObjectURL(blob);
    el.photo.src = photoURL;
    el.boxes.replaceChildren();
    el.faces.replaceChildren();
    el.timings.textContent = "";
    el.result.dataset.faces = "";
    el.stage.hidden = false;
    el.dropzone.classList.add("compact");
    setState("loading", "Looking for faces…");
    let resp;
    try {
      resp = await post("/v1/predict", blob);
    } catch (e) {
      if (seq === requestSeq) setState("error", "Cannot reach the server: " + e.message, true);
      return;
    }
    if (seq !== requestSeq) return;
    if (!resp.ok) {
      const msg = await errorMessage(resp);
      if (seq !== requestSeq) return;
      el.stage.hidden = true;
      setState("error", "Could not analyse the photo: " + msg, true);
      return;
    }
    const result = await resp.json();
    if (seq !== requestSeq) return;
    current.result = result;
    render(result);
  }

  function render(res) {
    const n = res.faces.length;
    el.result.dataset.faces = String(n);
    el.toolbar.hidden = n === 0;
    el.boxes.replaceChildren();
    el.faces.replaceChildren();
    res.faces.forEach((f, i) => {
      el.boxes.appendChild(boxFor(f, i, res));
      el.faces.appendChild(cardFor(f, i));
    });
    const t = res.timings_ms || {};
    const total = t.server_total != null ? t.server_total : t.total;
    el.timings.textContent = total != null ? "Server time " + Math.round(total) + " ms" +
      (t.detect != null ? " (detect " + Math.round(t.detect) + " ms, classify " + Math.round(t.classify || 0) + " ms)" : "") +
      " · photo " + res.width + "×" + res.height : "";
    const summary = n === 0 ? "No face found in this photo." :
      n === 1 ? "1 face: " + res.faces[0].label + "." :
      n + " faces: " + res.faces.map((f) => f.label).join(", ") + ".";
    setState("done", summary);
  }

  function boxFor(f, i, res) {
    const [l, t, r, b] = f.box;
    const W = res.width, H = res.height;
    const box = document.createElement("div");
    box.className = "face-box " + emoClass(f.label);
    box.dataset.index = String(i);
    box.dataset.label = f.label;
    box.style.left = (100 * l / W) + "%";
    box.style.top = (100 * t / H) + "%";
    box.style.width = (100 * (r - l) / W) + "%";
    box.style.height = (100 * (b - t) / H) + "%";
    if (t / H < 0.06) box.classList.add("label-below");
    const label = document.createElement("span");
    label.className = "face-label";
    label.textContent = (res.faces.length > 1 ? (i + 1) + " · " : "") + f.label + " " + pct(f.probabilities[f.label]);
    box.appendChild(label);
    (f.landmarks || []).forEach(([x, y]) => {
      const dot = document.createElement("span");
      dot.className = "landmark";
      dot.style.left = (100 * (x - l) / (r - l)) + "%";
      dot.style.top = (100 * (y - t) / (b - t)) + "%";
      box.appendChild(dot);
    });
    return box;
  }

  function cardFor(f, i) {
    const li = document.createElement("li");
    li.className = "face-card " + emoClass(f.label);
    li.dataset.index = String(i);
    const h = document.createElement("h3");
    h.textContent = "Face " + (i + 1) + ": ";
    const strong = document.createElement("span");
    strong.className = "face-card-label";
    strong.textContent = f.label;
    h.appendChild(strong);
    if (f.flags && f.flags.length) {
      const fl = document.createElement("span");
      fl.className = "flags";
      fl.textContent = " (" + f.flags.join(", ") + ")";
      h.appendChild(fl);
    }
    li.appendChild(h);
    const entries = Object.entries(f.probabilities).sort((a, b) => b[1] - a[1]);
    entries.forEach(([name, p]) => {
      const row = document.createElement("div");
      row.className = "prob " + emoClass(name) + (name === f.label ? " is-top" : "");
      row.dataset.emotion = name;
      const nm = document.createElement("span");
      nm.className = "prob-name";
      nm.textContent = name;
      const bar = document.createElement("div");
      bar.className = "prob-bar";
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-label", name);
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "100");
      bar.setAttribute("aria-valuenow", (100 * p).toFixed(1));
      const fill = document.createElement("div");
      fill.className = "prob-fill";
      fill.style.width = (100 * p).toFixed(2) + "%";
      bar.appendChild(fill);
      const v = document.createElement("span");
      v.className = "prob-value";
      v.textContent = pct(p);
      row.append(nm, bar, v);
      li.appendChild(row);
    });
    return li;
  }

  // ------------------------------------------------------------------ saliency
  async function updateSaliency() {
    if (!el.saliencyToggle.checked || !current || !current.result) {
      el.saliency.hidden = true;
      el.body.dataset.saliency = "off";
      return;
    }
    const method = el.saliencyMethod.value;
    const seq = requestSeq;
    if (!current.overlays[method]) {
      el.body.dataset.saliency = "loading";
      setState("loading", "Computing the saliency map (" + method + ")…");
      let resp;
      try {
        resp = await post("/v1/explain?method=" + encodeURIComponent(method), current.blob);
      } catch (e) {
        setState("error", "Cannot reach the server: " + e.message, true);
        return;
      }
      if (seq !== requestSeq) return;
      if (!resp.ok) {
        const msg = await errorMessage(resp);
        el.saliencyToggle.checked = false;
        el.body.dataset.saliency = "error";
        setState("error", "Could not compute the saliency map: " + msg, true);
        return;
      }
      const blob = await resp.blob();
      if (seq !== requestSeq) return;
      current.overlays[method] = URL.createObjectURL(blob);
      render(current.result);
    }
    if (!el.saliencyToggle.checked || el.saliencyMethod.value !== method) return;
    el.saliency.src = current.overlays[method];
    el.saliency.hidden = false;
    el.body.dataset.saliency = method;
  }

  // ------------------------------------------------------------------ webcam
  async function openWebcam() {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
    } catch (e) {
      setState("error", "The camera is not available: " + e.message, true);
      return;
    }
    el.video.srcObject = stream;
    el.webcam.hidden = false;
    el.capture.focus();
  }

  function closeWebcam() {
    stopLive();
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    el.video.srcObject = null;
    el.webcam.hidden = true;
  }

  // ------------------------------------------------------------------ live camera
  // One frame in flight at a time: the next frame is captured when the previous answer is
  // drawn, so a slow answer never builds a queue of stale frames. Frames go to /v1/live at
  // most 640 px wide; the server answers 429 (at once) to a frame sent too soon.
  const LIVE_WIDTH = 640;
  const LIVE_GAP_MS = 1000 / 15 + 3;  // the server reads at most 15 frames a second per client
  let lastSent = 0;
  const COLOURS = { angry: "#d62728", disgust: "#8c564b", fear: "#9467bd", happy: "#ff7f0e", sad: "#1f77b4",
    surprise: "#2ca02c", neutral: "#7f7f7f", contempt: "#e377c2" };
  let live = false;
  let liveTimes = [];   // when each answer was drawn (ms), the last 2 s
  let liveLatency = []; // capture to drawn label (ms), the last 30 frames
  let liveFrames = 0;

  function frameBlob() {
    const vw = el.video.videoWidth, vh = el.video.videoHeight;
    if (!vw || !vh) return Promise.resolve(null);
    const s = Math.min(1, LIVE_WIDTH / vw);
    const c = document.createElement("canvas");
    c.width = Math.round(vw * s);
    c.height = Math.round(vh * s);
    c.getContext("2d").drawImage(el.video, 0, 0, c.width, c.height);
    return new Promise((resolve) => c.toBlob(resolve, "image/jpeg", 0.8));
  }

  function drawLive(res) {
    const cv = el.liveOverlay;
    const w = el.video.clientWidth, h = el.video.clientHeight;
    cv.width = w;
    cv.height = h;
    const g = cv.getContext("2d");
    g.clearRect(0, 0, w, h);
    const sx = w / res.width, sy = h / res.height;
    res.faces.forEach((f) => {
      const [l, t, r, b] = f.box;
      const colour = COLOURS[f.label] || "#ffffff";
      g.lineWidth = 3;
      g.strokeStyle = colour;
      g.strokeRect(l * sx, t * sy, (r - l) * sx, (b - t) * sy);
      g.font = "bold 14px system-ui, sans-serif";
      const text = f.label + " " + pct(f.probabilities[f.label]);
      const tw = g.measureText(text).width + 8;
      const ty = Math.max(0, t * sy - 20);
      g.fillStyle = colour;
      g.fillRect(l * sx, ty, tw, 20);
      g.fillStyle = "#ffffff";
      g.fillText(text, l * sx + 4, ty + 15);
      // a bar per class under the box, as long as its probability
      const bw = Math.max(40, (r - l) * sx);
      Object.entries(f.probabilities).forEach(([name, p], k) => {
        g.fillStyle = COLOURS[name] || "#cccccc";
        g.fillRect(l * sx, b * sy + 4 + 5 * k, bw * p, 4);
      });
    });
    el.body.dataset.liveFaces = String(res.faces.length);
  }

  function showLiveStats() {
    const now = performance.now();
    liveTimes = liveTimes.filter((t) => now - t < 2000);
    const fps = liveTimes.length / 2;
    const lat = liveLatency.length ? liveLatency.reduce((a, b) => a + b, 0) / liveLatency.length : 0;
    el.liveStats.textContent = "Live: " + fps.toFixed(1) + " frames/s answered, " + Math.round(lat) +
      " ms from capture to label";
    el.body.dataset.liveFps = fps.toFixed(2);
    el.body.dataset.liveLatencyMs = lat.toFixed(1);
    el.body.dataset.liveFrames = String(liveFrames);
  }

  async function liveLoop() {
    while (live && !document.hidden) {
      const wait = lastSent + LIVE_GAP_MS - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (!live || document.hidden) break;
      const t0 = performance.now();
      const blob = await frameBlob();
      if (!live) break;
      if (!blob) { await new Promise((r) => setTimeout(r, 100)); continue; }
      let resp;
      lastSent = performance.now();
      try {
        resp = await fetch("/v1/live", { method: "POST", body: blob, headers: { "Content-Type": "image/jpeg" } });
      } catch (e) {
        stopLive("The live view stopped: cannot reach the server (" + e.message + "). Take still photos instead.");
        return;
      }
      if (!live) break;
      if (resp.status === 429) {  // too soon: wait a little, then send the newest frame
        await new Promise((r) => setTimeout(r, 30));
        continue;
      }
      if (!resp.ok) {
        const msg = await errorMessage(resp);
        stopLive("The live view stopped: " + msg + ". Take still photos instead.");
        return;
      }
      const res = await resp.json();
      if (!live) break;
      drawLive(res);
      const t1 = performance.now();
      liveFrames += 1;
      liveTimes.push(t1);
      liveLatency.push(t1 - t0);
      if (liveLatency.length > 30) liveLatency.shift();
      showLiveStats();
    }
  }

  function startLive() {
    if (live || !stream) return;
    live = true;
    liveTimes = [];
    liveLatency = [];
    liveFrames = 0;
    el.liveButton.textContent = "Stop live";
    el.liveButton.setAttribute("aria-pressed", "true");
    el.body.dataset.live = "running";
    liveLoop();
  }

  function stopLive(message) {
    const was = live;
    live = false;
    el.liveButton.textContent = "Go live";
    el.liveButton.setAttribute("aria-pressed", "false");
    const g = el.liveOverlay.getContext("2d");
    g.clearRect(0, 0, el.liveOverlay.width, el.liveOverlay.height);
    if (message) {
      el.body.dataset.live = "refused";
      setState("error", message, true);
    } else if (was) {
      el.body.dataset.live = "stopped";
    }
  }

  // a hidden page stops the live view and the camera (it must not film in the background)
  document.addEventListener("visibilitychange", () => {
    if (document.hidden && stream) closeWebcam();
  });

  function captureFrame() {
    if (!el.video.videoWidth) return;
    const c = document.createElement("canvas");
    c.width = el.video.videoWidth;
    c.height = el.video.videoHeight;
    c.getContext("2d").drawImage(el.video, 0, 0);
    c.toBlob((b) => handleBlob(b), "image/jpeg", 0.92);
  }

  // Small photos are drawn larger (up to 2x, 640 px wide, and within 72% of the window's
  // height); the boxes are in percent, so they follow whatever size the photo is drawn at.
  function sizePhoto() {
    const w = el.photo.naturalWidth, h = el.photo.naturalHeight;
    if (!w || !h) return;
    const s = Math.max(1, Math.min(2, 640 / w, (0.72 * window.innerHeight) / h));
    if (s > 1) el.photo.style.width = Math.round(w * s) + "px";
    else el.photo.style.removeProperty("width");
  }
  el.photo.addEventListener("load", sizePhoto);
  window.addEventListener("resize", sizePhoto);

  // ------------------------------------------------------------------ wiring
  el.fileInput.addEventListener("change", () => {
    const f = el.fileInput.files && el.fileInput.files[0];
    if (f) handleBlob(f);
    el.fileInput.value = "";
  });

  el.dropzone.addEventListener("keydown", (e) => {
    if (e.target === el.dropzone && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      el.fileInput.click();
    }
  });

  ["dragenter", "dragover"].forEach((t) => document.addEventListener(t, (e) => {
    e.preventDefault();
    el.dropzone.classList.add("dragging");
  }));
  ["dragleave", "dragend"].forEach((t) => document.addEventListener(t, (e) => {
    if (!e.relatedTarget) el.dropzone.classList.remove("dragging");
  }));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    el.dropzone.classList.remove("dragging");
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) handleBlob(files[0]);
  });

  document.addEventListener("paste", (e) => {
    const items = (e.clipboardData && e.clipboardData.items) || [];
    for (const it of items) {
      if (it.kind === "file" && it.type.startsWith("image/")) {
        e.preventDefault();
        handleBlob(it.getAsFile());
        return;
      }
    }
  });

  el.saliencyToggle.addEventListener("change", updateSaliency);
  el.saliencyMethod.addEventListener("change", updateSaliency);
  el.boxesToggle.addEventListener("change", () => el.boxes.classList.toggle("hidden", !el.boxesToggle.checked));

  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    el.webcamButton.addEventListener("click", openWebcam);
    el.capture.addEventListener("click", captureFrame);
    el.webcamClose.addEventListener("click", closeWebcam);
    el.liveButton.addEventListener("click", () => (live ? stopLive() : startLive()));
  } else {
    el.webcamButton.disabled = true;
    el.webcamButton.title = "This browser does not allow camera access on this page";
  }

  fetch("/v1/models").then((r) => (r.ok ? r.json() : null)).then((m) => {
    if (!m) return;
    el.modelInfo.textContent = "model " + m.model.name + (m.model.arch ? " (" + m.model.arch + ")" : "") +
      " · detector " + m.detector;
    maxUpload = (m.limits && m.limits.max_upload_bytes) || 0;
    if (Array.isArray(m.explain_methods) && m.explain_methods.length) {  // e.g. no Grad-CAM for an ensemble
      Array.from(el.saliencyMethod.options).forEach((o) => {
        if (m.explain_methods.indexOf(o.value) < 0) o.remove();
      });
    }
    if (maxUpload) el.limitHint.textContent = ", up to " + Math.round(maxUpload / 1048576) + " MB";
  }).catch(() => {});
})();
