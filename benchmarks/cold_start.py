"""Cold start: wall time and peak memory of one photo in a fresh process.

Measures, each ``--repeat`` times in a new process (median reported):

- ``cli``: ``wildfer predict one.jpg --json x.json`` (the pipeline's model, default settings);
- ``api``: ``python -c "import wildfer; wildfer.Recognizer().predict('one.jpg')"``;
- ``import_wildfer``: ``python -c "import wildfer"`` (what importing the package alone costs);
- ``import_torch``: ``python -c "import torch"``, for reference.

The photo is a 1280 x 720 JPEG with one face (a KDEF portrait on a textured background, as in
``benchmarks/wild_latency.py``). Peak memory is the child's maximum resident set (``wait4``).
Also records whether torch was imported by the API path.

Goals for an inference path without torch: <= 0.5 s and <= 150 MB on a 2-core CPU.

Usage: ``python benchmarks/cold_start.py [--repeat 5] [--model M] [--backend B] [--python PY]``. Writes
``benchmarks/results/cold_start.json``. ``--python`` times another installation's interpreter
(and the ``wildfer`` command beside it), e.g. a venv with the light install (no torch; the
``import_torch`` case is then left out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, ROOT, describe_machine, write_result

OUT = ROOT / "benchmarks" / "results" / "cold_start.json"


def photo(path: Path) -> Path:
    import cv2
    import numpy as np

    from wildfer.data.images import read_image

    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (45, 80, 3), dtype=np.uint8), (1280, 720)), (0, 0), 6)
    face = read_image(DATA / "wild" / "kdef_frontal" / "AF01HAS.JPG")
    face = cv2.resize(face, (int(281 * 1.5), int(381 * 1.5)), interpolation=cv2.INTER_CUBIC)
    y, x = (720 - face.shape[0]) // 2, (1280 - face.shape[1]) // 2
    bg[y:y + face.shape[0], x:x + face.shape[1]] = face
    cv2.imwrite(str(path), np.ascontiguousarray(bg[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def run(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of ``cmd`` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return wall, usage.ru_maxrss / 1024, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default=None, help="default: the pipeline's model")
    ap.add_argument("--backend", default="auto", help="the classifier's backend (default: the model's own)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--python", default=sys.executable, help="the interpreter to time (default: this one)")
    args = ap.parse_args()
    from wildfer.models import PIPELINE_MODEL

    model = args.model or PIPELINE_MODEL
    python = os.path.abspath(args.python)  # the runs start in a temporary folder; a venv's symlink is kept
    wildfer_cli = str(Path(python).with_name("wildfer"))
    has_torch = subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = photo(tmp / "one.jpg")
        api = (f"import sys, wildfer; r = wildfer.Recognizer(model={model!r}, backend={args.backend!r})"
               f".predict({str(one)!r}); print(len(r.faces), 'torch' in sys.modules)")
        cases = {
            "cli": [wildfer_cli, "predict", str(one), "--model", model, "--backend", args.backend,
                    "--json", str(tmp / "x.json")],
            "api": [python, "-c", api],
            "import_wildfer": [python, "-c", "import wildfer"],
        }
        if has_torch:
            cases["import_torch"] = [python, "-c", "import torch"]
        results = {}
        for name, cmd in cases.items():
            run(cmd, tmp)  # once to warm the file cache
            runs = [run(cmd, tmp) for _ in range(args.repeat)]
            results[name] = {"wall_s_median": round(statistics.median(r[0] for r in runs), 3),
                             "peak_rss_mb_median": round(statistics.median(r[1] for r in runs), 1),
                             "wall_s": [round(r[0], 3) for r in runs]}
            if name == "api":
                faces, torch_loaded = runs[-1][2].split()
                results[name].update(faces=int(faces), torch_imported=torch_loaded == "True")
    out = {"benchmark": "cold_start", "model": model, "backend": args.backend, "photo": "1280x720 JPEG, one face",
           "repeat": args.repeat,
           "installation": {"python": python, "torch_installed": has_torch},
           "results": results, "targets": {"wall_s": 0.5, "peak_rss_mb": 150}, "machine": describe_machine()}
    write_result(args.out, out)
    print(json.dumps({k: {m: v[m] for m in ("wall_s_median", "peak_rss_mb_median")} for k, v in results.items()}))


if __name__ == "__main__":
    main()
