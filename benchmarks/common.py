"""What every benchmark shares: where the data sets are, and the ``machine`` record (what it ran
on, and when) that each one stores in its JSON.

    python benchmarks/common.py     # prints the data folder and this machine's record

The scripts in this folder import it as ``from common import DATA, describe_machine`` (the
folder is on ``sys.path`` when a script runs). torch's version and the GPU are named only when
the calling script has imported torch, so describing the machine never pays torch's import.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the data sets are not shipped: WILDFER_DATA names the folder holding fer2013/ and wild/
DATA = Path(os.environ.get("WILDFER_DATA") or os.environ.get("WILDFER_SHARED_DATA") or ROOT.parent / "shared" / "data")


# instruction-set extensions that change CPU inference and bf16 training speed
FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's name from /proc/cpuinfo (else what ``platform`` knows) and which of FEATURES it has."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), [f for f in FEATURES if f in flags]


def describe_machine(**extra) -> dict:
    """Date (UTC, ISO 8601), CPU and its features, core count, OS, Python and, when loaded,
    torch and the GPU; ``extra`` keys (threads, load averages ...) are added after them."""
    cpu, features = cpu_model()
    info = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_features": features,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info.update(extra)
    return info


if __name__ == "__main__":  # `make bench` runs every script here with --quick; this one just prints
    print(json.dumps({"data": str(DATA), "machine": describe_machine()}, indent=2))
