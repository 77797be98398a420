"""PReLU as a maximum: ``wild_mfn``'s shipped graphs, which compute each PReLU as
``Max(x, slope * x)`` (:func:`wildfer.models.onnx.prelus_as_max`), against the same graphs with
those two nodes put back into one ``PRelu``, on onnxruntime's CPU provider.

For each graph (float weights graph, int8 graph), each thread count (1, 2) and each batch
(1, 2, 8 faces of 112 x 112): the median milliseconds of a call over ``--runs`` calls, the two
forms alternating so that both see the same load, and the largest difference between their
outputs on real faces (0 when they compute the same numbers).

Usage: ``python benchmarks/prelu_as_max.py [--runs 60] [--out FILE]``.
Writes ``benchmarks/results/prelu_as_max.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from common import DATA, ROOT, describe_machine, write_result

OUT = ROOT / "benchmarks" / "results" / "prelu_as_max.json"
WEIGHTS = ROOT / "src" / "wildfer" / "weights"
GRAPHS = {"float": WEIGHTS / "wild_mfn.onnx", "int8": WEIGHTS / "wild_mfn.int8.onnx"}


def as_prelus(model) -> int:
    """Undo :func:`prelus_as_max` in place: each ``Max(x, Mul(x, s))`` back to ``PRelu(x, s)``."""
    from onnx import helper

    made_by = {o: n for n in model.graph.node for o in n.output}
    muls, nodes, done = set(), [], 0
    for n in model.graph.node:
        mul = made_by.get(n.input[1]) if n.op_type == "Max" and len(n.input) == 2 else None
        if mul is not None and mul.op_type == "Mul" and mul.input[0] == n.input[0]:
            muls.add(mul.output[0])
            nodes.append(helper.make_node("PRelu", [n.input[0], mul.input[1]], list(n.output), name=n.name))
            done += 1
        else:
            nodes.append(n)
    nodes = [n for n in nodes if not (n.op_type == "Mul" and n.output[0] in muls)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return done


def faces(n: int = 64) -> np.ndarray:
    """``n`` ExpW val faces cut as ``wild_mfn`` reads them, normalised (N x 3 x 112 x 112)."""
    from wildfer import Recognizer
    from wildfer.data.manifest import read_manifest

    rec = Recognizer(model="wild_mfn")
    out = []
    for path in dict.fromkeys(item.path for item in read_manifest(DATA / "wild" / "expw.csv", split="val")):
        out += rec.prepare(path).crops
        if len(out) >= n:
            break
    return (np.stack(out[:n]).astype(np.float32) / 255 - 0.5) / 0.5


def main() -> None:
    import onnx
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    x = faces()
    results = []
    for kind, path in GRAPHS.items():
        shipped = onnx.load(str(path))
        prelu = onnx.load(str(path))
        n = as_prelus(prelu)
        for threads in (1, 2):
            sessions = {}
            for form, model in (("max", shipped), ("prelu", prelu)):
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
                sessions[form] = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            name = sessions["max"].get_inputs()[0].name
            outs = {f: s.run(None, {name: x})[0] for f, s in sessions.items()}
            diff = float(np.abs(outs["max"] - outs["prelu"]).max())
            for batch in (1, 2, 8):
                xb = x[:batch]
                times = {f: [] for f in sessions}
                for _ in range(5):
                    for s in sessions.values():
                        s.run(None, {name: xb})
                for _ in range(args.runs):
                    for f, s in sessions.items():
                        t = time.perf_counter()
                        s.run(None, {name: xb})
                        times[f].append((time.perf_counter() - t) * 1e3)
                row = {"graph": kind, "prelus": n, "threads": threads, "batch": batch,
                       "ms_max": round(statistics.median(times["max"]), 2),
                       "ms_prelu": round(statistics.median(times["prelu"]), 2),
                       "max_abs_output_difference": diff}
                row["time_saved"] = round(1 - row["ms_max"] / row["ms_prelu"], 3)
                results.append(row)
                print(row)
    record = {"benchmark": "prelu_as_max", "faces": int(len(x)), "runs": args.runs, "results": results,
              "machine": describe_machine()}
    write_result(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
