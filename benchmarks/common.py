"""What every benchmark shares: where the data sets are, and the ``machine`` record (what it ran
on, and when: :func:`wildfer.machine.machine`) that each one stores in its JSON.

    python benchmarks/common.py     # prints the data folder and this machine's record

The scripts in this folder import it as ``from common import DATA, describe_machine`` (the
folder is on ``sys.path`` when a script runs). torch's version and the GPU are named only when
the calling script has imported torch, so describing the machine never pays torch's import.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the data sets are not shipped: WILDFER_DATA names the folder holding fer2013/ and wild/
DATA = Path(os.environ.get("WILDFER_DATA") or os.environ.get("WILDFER_SHARED_DATA") or ROOT.parent / "shared" / "data")
# the wild dev sets every model is reported on: name -> (manifest under DATA / "wild", split)
WILD_SETS = {"expw_val": ("expw.csv", "val"), "lfw": ("lfw.csv", None), "kdef_frontal": ("kdef_frontal.csv", None)}


try:  # the record is wildfer's own (wildfer.machine), so reports and benchmarks share its fields
    from wildfer.machine import FEATURES, cpu_model, machine as describe_machine
except ImportError:  # run from a checkout without an installed wildfer
    sys.path.insert(0, str(ROOT / "src"))
    from wildfer.machine import FEATURES, cpu_model, machine as describe_machine


def write_result(path: Path, record: dict, *, indent: int = 1) -> Path:
    """Write a benchmark's ``record`` as JSON to ``path`` (its folder made), whole or not at all:
    an interrupted run leaves the previous result in place."""
    from wildfer.paths import write_bytes_whole

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_whole(path, (json.dumps(record, indent=indent) + "\n").encode())


def run_threads(client, concurrency: int) -> float:
    """Run ``client`` in ``concurrency`` threads at once; the wall seconds until all are done."""
    import threading
    import time

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


__all__ = ["DATA", "FEATURES", "ROOT", "WILD_SETS", "cpu_model", "describe_machine", "run_threads"]


if __name__ == "__main__":
    print(json.dumps({"data": str(DATA), "machine": describe_machine()}, indent=2))
