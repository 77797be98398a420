"""Install size: what ``pip install wildfer`` puts on disk, with no extras and with each given.

Builds the wheel from this checkout, then for each install (``base``: the wheel alone; one per
``--extras`` name: ``wildfer[NAME]``) makes a fresh venv, installs into it with the exact
versions of ``constraints.txt`` and records the venv's size on disk, the wheel's size, the ten
largest distributions in it (their files, as pip's RECORD lists them) and whether torch and
scikit-learn are in it. Every install runs ``python -c "import wildfer"`` to show it works.

Usage: ``python benchmarks/install_size.py [--extras eval train] [--keep DIR]``. Writes
``benchmarks/results/install_size.json``. Needs the package index pip is configured with (no
network beyond it). A venv is made with its own pip (``python -m venv``), as a user's is.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, describe_machine

OUT = ROOT / "benchmarks" / "results" / "install_size.json"


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links not followed), as ``du --apparent-size``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def distributions(site: Path) -> dict[str, int]:
    """Each installed distribution's bytes on disk, from the files its RECORD lists."""
    sizes: dict[str, int] = {}
    for info in site.glob("*.dist-info"):
        record = info / "RECORD"
        if not record.is_file():
            continue
        name = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
        total = 0
        with open(record, newline="") as f:
            for row in csv.reader(f):
                p = (site / row[0]).resolve() if row else None
                if p is not None and p.is_file():
                    total += p.stat().st_size
        sizes[name] = total
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def install(wheel: Path, extras: str | None, where: Path) -> dict:
    venv = where / (f"venv-{extras}" if extras else "venv-base")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    target = f"wildfer[{extras}] @ {wheel.as_uri()}" if extras else str(wheel)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), target], check=True)
    subprocess.run([str(py), "-c", "import wildfer"], check=True, cwd=where)
    site = next((venv / "lib").glob("python*/site-packages"))
    dists = distributions(site)
    mib = 1024 * 1024
    return {
        "install": f"pip install {'wildfer[' + extras + ']' if extras else 'wildfer'}",
        "venv_mib": round(tree_bytes(venv) / mib, 1),
        "site_packages_mib": round(tree_bytes(site) / mib, 1),
        "has_torch": any(d.lower() == "torch" for d in dists),
        "has_scikit_learn": any(d.lower() == "scikit_learn" for d in dists),
        "largest_mib": {d: round(b / mib, 1) for d, b in list(dists.items())[:10]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extras", nargs="*", default=["eval"], help="extras to measure besides the base install")
    ap.add_argument("--keep", type=Path, default=None, help="make the venvs here and keep them")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(where / "dist"), str(ROOT)],
                       check=True)
        wheel = next((where / "dist").glob("wildfer-*.whl"))
        rows = [install(wheel, None, where)] + [install(wheel, e, where) for e in args.extras]
        result = {"wheel": wheel.name, "wheel_mib": round(wheel.stat().st_size / 2**20, 1), "installs": rows,
                  "machine": describe_machine()}
    for r in rows:
        print(f"{r['install']:28s} venv {r['venv_mib']:7.1f} MiB  site-packages {r['site_packages_mib']:7.1f} MiB"
              f"  torch={r['has_torch']} scikit-learn={r['has_scikit_learn']}")
    print(f"wheel {result['wheel']}: {result['wheel_mib']} MiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.part")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
