"""How closely the dequantised MobileFaceNet (``wildfer models convert``) reproduces the OpenCV
model zoo's int8 graph on real web faces, and what both read zero-shot.

The ExpW ``val`` faces are cut on the zoo's five-point template at 112 px in colour (the crop
cache, ``wildfer.wild.crops``). Three outputs per face: the int8 graph on onnxruntime (batch 1,
as the graph is built), the float PyTorch net, and the float net with the graph's arithmetic
emulated (``wildfer.models.convert.round_like_graph``: integer convolutions and residual adds).
Writes argmax agreement with the graph, mean and largest logit differences, and each one's
accuracy on the ExpW labels.

Usage: ``python benchmarks/convert_agreement.py [--out benchmarks/results/convert_agreement.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import DATA, ROOT, describe_machine, write_result

ZOO = DATA / "pretrained" / "opencv_zoo_fer" / "facial_expression_recognition_mobilefacenet_2022july_int8.onnx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "convert_agreement.json")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from wildfer.labels import FER2013_CLASSES
    from wildfer.models.convert import ZOO_PREPROCESS, mobilefacenet_from_onnx, round_like_graph
    from wildfer.wild.align import align_for
    from wildfer.wild.crops import crop_manifest

    t0 = time.time()
    faces = crop_manifest(DATA / "wild" / "expw.csv", split="val", align=align_for(ZOO_PREPROCESS), colour=True)
    x = (faces.images.astype(np.float32) / 255 - 0.5) / 0.5
    sess = ort.InferenceSession(str(ZOO), providers=["CPUExecutionProvider"])
    graph = np.concatenate([sess.run(None, {"data": x[i : i + 1]})[0] for i in range(len(x))])
    net, classes = mobilefacenet_from_onnx(ZOO)
    with torch.no_grad():
        plain = net(torch.from_numpy(x)).numpy()
    handles = round_like_graph(net, ZOO)
    with torch.no_grad():
        rounded = net(torch.from_numpy(x)).numpy()
    for h in handles:
        h.remove()
    order = [classes.index(c) for c in FER2013_CLASSES]  # the zoo's output order -> FER2013's

    def accuracy(logits: np.ndarray) -> float:
        return round(float((logits[:, order].argmax(1) == faces.labels).mean()), 4)

    result = {"machine": describe_machine(), "faces": int(len(x)), "int8_graph_accuracy": accuracy(graph)}
    for name, out in (("float", plain), ("float_with_graph_rounding", rounded)):
        diff = np.abs(out - graph)
        result[name] = {"argmax_agreement": round(float((out.argmax(1) == graph.argmax(1)).mean()), 4),
                        "mean_abs_logit_difference": round(float(diff.mean()), 4),
                        "max_abs_logit_difference": round(float(diff.max()), 4), "accuracy": accuracy(out)}
    result["seconds"] = round(time.time() - t0, 1)
    write_result(args.out, result, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}))


if __name__ == "__main__":
    main()
