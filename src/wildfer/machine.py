"""The ``machine`` record stored beside measurements (evaluation and explanation reports, the
benchmarks): when and on what they were made, so numbers from different computers are not
compared as if they were one.

>>> from wildfer.machine import machine
>>> sorted(machine())                                          # doctest: +SKIP
['cores', 'cpu', 'cpu_features', 'date', 'gpu', 'platform', 'python', 'torch', 'wildfer']
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import sys
from pathlib import Path

#: Instruction-set extensions that change CPU inference (int8: VNNI) and bf16 training speed.
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's name from /proc/cpuinfo (else what ``platform`` knows) and which of FEATURES it has."""
    name, features = _read_cpu()
    return name, list(features)


@functools.lru_cache(maxsize=1)
def _read_cpu() -> tuple[str, tuple[str, ...]]:
    """/proc/cpuinfo read once per process (every onnxruntime session asks about VNNI)."""
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
    return name or platform.processor() or platform.machine(), tuple(f for f in FEATURES if f in flags)


def _has_any(*features: str) -> bool:
    return bool(set(features) & set(_read_cpu()[1]))


def has_bf16_units() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where bf16 autocast
    speeds training up; elsewhere it emulates bf16 and runs slower than fp32."""
    return _has_any("avx512_bf16", "amx_bf16")


def has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX512-VNNI or AVX-VNNI), whose int8 dot products onnxruntime
    uses without 16-bit intermediate sums."""
    return _has_any("avx512_vnni", "avx_vnni")


def machine(**extra) -> dict:
    """Date (UTC, ISO 8601), CPU and its features, core count, OS, Python, wildfer and, when
    torch is loaded, its version and the GPU (``None`` without one); ``extra`` keys (threads,
    load averages ...) are added after them. torch is named only when the caller has imported
    it, so describing the machine never pays torch's import."""
    from . import __version__

    cpu, features = cpu_model()
    info = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_features": features,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wildfer": __version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info.update(extra)
    return info


__all__ = ["FEATURES", "cpu_model", "has_bf16_units", "has_vnni", "machine"]
