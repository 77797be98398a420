"""Cold and cached loading of the shared FER2013 (and FER+ on top of it).

Cold: ``load_fer2013(path, use_cache=False)`` parses and validates the whole CSV. Cached: a
fresh cache folder is filled by one load, then each timed load reads the ``.npz`` cache.
The target is a cached load under 2 s. Writes ``benchmarks/results/data_loading.json``.

    nice -n 19 .venv/bin/python benchmarks/data_loading.py           # 3 cold, 10 cached loads
    nice -n 19 .venv/bin/python benchmarks/data_loading.py --quick   # 1 cold, 3 cached loads

Numbers are wall-clock on whatever else the machine runs at the time (the JSON records the
load average and the CPU time of each load as well).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, describe_machine, write_result

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "data_loading.json"
TARGET_CACHED_S = 2.0


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w, time.process_time() - c


def timed_runs(fn, n: int, label: str, *, digits: int, rows: bool = False):
    """Call ``fn`` ``n`` times, printing each run's wall and CPU seconds (and the row count);
    returns (the last result, wall seconds per run, CPU seconds per run)."""
    walls, cpus = [], []
    for _ in range(n):
        result, w, c = timed(fn)
        walls.append(w)
        cpus.append(c)
        print(f"{label} {w:7.{digits}f} s wall  {c:7.{digits}f} s cpu" + (f"  ({len(result)} rows)" if rows else ""))
    return result, walls, cpus


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 cold load, 3 cached loads")
    ap.add_argument("--data", type=Path, default=DATA / "fer2013" / "fer2013.csv.gz")
    ap.add_argument("--ferplus", type=Path, default=DATA / "fer2013" / "fer2013new.csv")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"shared data not found: {args.data}", file=sys.stderr)
        return 2

    from wildfer.data.fer2013 import load_fer2013

    n_cold, n_cached = (1, 3) if args.quick else (3, 10)
    res: dict = {
        "file": str(args.data),
        "file_bytes": args.data.stat().st_size,
        "quick": args.quick,
        "machine": describe_machine(),
        "loadavg_before": list(os.getloadavg()),
    }
    data, cold_wall, cold_cpu = timed_runs(lambda: load_fer2013(args.data, use_cache=False), n_cold, "cold  ",
                                           digits=2, rows=True)
    res["rows"] = len(data)
    res["usages"] = data.usage_counts()

    with tempfile.TemporaryDirectory(prefix="wildfer-bench-cache-") as cdir:
        _, w, c = timed(lambda: load_fer2013(args.data, cache_dir=cdir))
        res["first_load_with_cache_write_s"] = w
        print(f"write  {w:7.2f} s wall  (parse + write the cache)")
        cache_bytes = sum(p.stat().st_size for p in Path(cdir).glob("*.npz"))
        d2, cached_wall, cached_cpu = timed_runs(lambda: load_fer2013(args.data, cache_dir=cdir), n_cached, "cached",
                                                 digits=3)
        assert len(d2) == res["rows"]
        plus_s = None
        if args.ferplus.exists():
            from wildfer.data.ferplus import load_ferplus

            dp, plus_s, _ = timed(lambda: load_ferplus(args.data, args.ferplus, cache_dir=cdir))
            print(f"FER+   {plus_s:7.3f} s wall  (cached FER2013 + parse fer2013new.csv; {len(dp)} rows kept)")

    res.update(
        cold_s=cold_wall,
        cold_cpu_s=cold_cpu,
        cold_best_s=min(cold_wall),
        cache_bytes=cache_bytes,
        cached_s=cached_wall,
        cached_cpu_s=cached_cpu,
        cached_best_s=min(cached_wall),
        cached_median_s=statistics.median(cached_wall),
        cached_max_s=max(cached_wall),
        ferplus_with_cached_fer2013_s=plus_s,
        target_cached_s=TARGET_CACHED_S,
        cached_under_target=max(cached_wall) < TARGET_CACHED_S,
        loadavg_after=list(os.getloadavg()),
    )
    write_result(args.out, res, indent=2)
    verdict = "OK" if res["cached_under_target"] else "SLOWER THAN TARGET"
    print(f"cached max {res['cached_max_s']:.3f} s (target < {TARGET_CACHED_S} s): {verdict}; wrote {args.out}")
    return 0 if res["cached_under_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
