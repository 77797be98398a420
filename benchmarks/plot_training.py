"""Draw a run's training curves (loss per iteration, accuracy per epoch) from metrics.jsonl.

    python benchmarks/plot_training.py runs/default benchmarks/results/train_default
copies metrics.jsonl and config.yaml there and writes curves.png.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(run: str, out: str) -> None:
    run_p, out_p = Path(run), Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    recs = [json.loads(line) for line in (run_p / "metrics.jsonl").read_text().splitlines() if line.strip()]
    it = [r for r in recs if r["type"] == "iter"]
    ep = [r for r in recs if r["type"] == "epoch"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot([r["iter"] for r in it], [r["loss"] for r in it], lw=0.3, alpha=0.5, label="per iteration")
    k = 50
    sm = [sum(r["loss"] for r in it[max(0, i - k): i + 1]) / len(it[max(0, i - k): i + 1]) for i in range(len(it))]
    a.plot([r["iter"] for r in it], sm, lw=1.5, label=f"mean of {k}")
    a.set_xlabel("iteration"), a.set_ylabel("training loss"), a.legend()
    e = [r["epoch"] + 1 for r in ep]
    b.plot(e, [r["train_acc"] for r in ep], "o-", label="train (augmented)")
    b.plot(e, [r["val_acc"] for r in ep], "o-", label="PublicTest")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.legend(), b.grid(alpha=0.3)
    fig.suptitle(f"{run_p.name}: best PublicTest {max(r['val_acc'] for r in ep):.4f}")
    fig.tight_layout()
    fig.savefig(out_p / "curves.png", dpi=110)
    for f in ("metrics.jsonl", "config.yaml"):
        if (run_p / f).exists():
            shutil.copy(run_p / f, out_p / f)
    print(f"wrote {out_p / 'curves.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
