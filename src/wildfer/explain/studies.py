"""The study's saliency figures as commands, with numbers beside the pictures.

* :func:`explain_images` - maps of several methods for a set of faces (grid + overlays).
* :func:`epochs_study` - saliency over training (the study's Fig. 5): rows = epochs,
  columns = one fixed face per class; per epoch the share of saliency in each face region.
* :func:`compare_models` - the same faces, several models side by side (Fig. 6).
* :func:`region_table` - share of saliency on brows, eyes, nose, mouth and outside the face,
  per class and per model, against each region's share of the area.

Sample faces are chosen without looking at any model: per class, the faces closest to
that class's mean face (after per-image standardisation), skipping flat, low-contrast
images. So every model and every epoch is shown the same, typical faces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import DataError, ModelError
from ..jsonio import write_json
from ..models.classifier import DEFAULT_PREPROCESS
from ..paths import written_whole
from .methods import create_method, get_method
from .regions import KEY_REGIONS, REGIONS, key_share, region_areas, region_shares, template_regions

Progress = Callable[[str], None] | None


# ----------------------------------------------------------------------------- faces


@dataclass
class FaceSet:
    """Faces to explain: uint8 ``N x H x W``, display names, true labels (class names or
    ``None``) and what could not be read (``(name, problem)``)."""

    images: np.ndarray
    names: list[str]
    labels: list[str | None]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.names)


def pick_per_class(images: np.ndarray, labels: np.ndarray, per_class: int = 1, *, n_classes: int | None = None,
                   min_std: float = 12.0) -> np.ndarray:
    """Indices of the ``per_class`` most typical faces of each class (closest to the class's
    mean standardised face), in class order; low-contrast faces (pixel std < ``min_std``)
    are skipped. Deterministic and independent of any model."""
    labels = np.asarray(labels)
    n_classes = int(n_classes if n_classes is not None else (labels.max() + 1 if len(labels) else 0))
    x = images.reshape(len(images), -1).astype(np.float32)
    std = x.std(1)
    z = (x - x.mean(1, keepdims=True)) / np.maximum(std, 1e-3)[:, None]
    out: list[int] = []
    for c in range(n_classes):
        idx = np.flatnonzero((labels == c) & (std >= min_std))
        if len(idx) == 0:
            idx = np.flatnonzero(labels == c)
        if len(idx) == 0:
            continue
        mean = z[idx].mean(0)
        d = ((z[idx] - mean) ** 2).sum(1)
        out.extend(idx[np.argsort(d, kind="stable")[:per_class]].tolist())
    return np.asarray(out, dtype=np.int64)


def stratified_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Up to ``per_class`` indices of each class, drawn with a fixed seed, sorted."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.extend(rng.permutation(idx)[:per_class].tolist())
    return np.sort(np.asarray(out, dtype=np.int64))


def load_data(path: str | Path, split: str | None = "PublicTest"):
    """Any data set :func:`wildfer.data.formats.load_dataset` reads, restricted to ``split``
    (:func:`~wildfer.data.formats.select_split`) when it has several splits (a folder without
    splits is used whole)."""
    from ..data.formats import load_dataset, select_split

    data = load_dataset(path)
    if len(data.usages()) > 1:
        data = select_split(data, split)
    if len(data) == 0:
        raise DataError(path, "no faces to explain")
    return data


def faces_from_data(path: str | Path, *, split: str | None = "PublicTest", per_class: int = 1) -> FaceSet:
    """``per_class`` typical faces per class of a data set (see :func:`pick_per_class`)."""
    data = load_data(path, split)
    idx = pick_per_class(data.images, data.labels, per_class, n_classes=len(data.classes))
    rows = data.rows[idx] if data.rows is not None else idx
    names = [f"{data.classes[data.labels[i]]}_row{int(r)}" for i, r in zip(idx, rows)]
    return FaceSet(data.images[idx], names, [data.classes[int(data.labels[i])] for i in idx], source=str(path))


def faces_from_paths(paths: Sequence[str | Path], size: int = DEFAULT_PREPROCESS["size"]) -> FaceSet:
    """Face crops from image files, as grayscale ``size x size``; unreadable files are
    skipped and reported, the others kept."""
    from PIL import Image

    from ..data.images import read_image, to_gray
    from ..errors import WildferError

    imgs, names, skipped = [], [], []
    for p in paths:
        try:
            g = to_gray(read_image(p))
        except WildferError as e:
            skipped.append((str(p), str(getattr(e, "problem", e))))
            continue
        if g.shape != (size, size):
            g = np.asarray(Image.fromarray(g).resize((size, size), Image.BILINEAR))
        imgs.append(g)
        names.append(Path(p).stem)
    arr = np.stack(imgs) if imgs else np.zeros((0, size, size), dtype=np.uint8)
    return FaceSet(arr, names, [None] * len(names), skipped)


def faces_from_input(path: str | Path, *, size: int = DEFAULT_PREPROCESS["size"], split: str | None = "PublicTest",
                     per_class: int = 1) -> FaceSet:
    """An image file, a folder of images, or a data set file (FER2013 / FER+ CSV, manifest)."""
    from ..data.images import is_image_file

    path = Path(path)
    if not path.exists():
        raise DataError(path, "not found")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise DataError(path, "folder holds no image files")
        fs = faces_from_paths(files, size)
        fs.source = str(path)
        if len(fs) == 0:
            raise DataError(path, f"none of the {len(files)} images could be read")
        return fs
    if is_image_file(path):
        fs = faces_from_paths([path], size)
        if fs.skipped:
            from ..errors import ImageError

            raise ImageError(path, fs.skipped[0][1])
        fs.source = str(path)
        return fs
    return faces_from_data(path, split=split, per_class=per_class)


# ----------------------------------------------------------------------------- maps


def parse_methods(spec: str | Sequence[str]) -> list[str]:
    """``"gradcam,smoothgrad"`` -> canonical names, validated."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out = []
    for n in names:
        if n:
            key = get_method(n).name
            if key not in out:
                out.append(key)
    if not out:
        from .methods import MethodError

        raise MethodError("no saliency method given")
    return out


def resolve_targets(clf, faces: FaceSet, target: str = "pred") -> list[int] | None:
    """``"pred"`` -> None (each face's predicted class); ``"true"`` -> the faces' labels;
    a class name -> that class for every face."""
    if target in (None, "", "pred", "predicted"):
        return None
    classes = list(clf.classes)
    if target == "true":
        if any(lb is None for lb in faces.labels):
            raise DataError(faces.source or "input", "--target true needs labelled faces (a data set)")
        missing = sorted({lb for lb in faces.labels if lb not in classes})
        if missing:
            raise ModelError(f"the model has no class {', '.join(missing)} (its classes: {', '.join(classes)})")
        return [classes.index(lb) for lb in faces.labels]
    from ..labels import normalize_label

    name = normalize_label(target)
    if name not in classes:
        raise ModelError(f"--target {target!r}: not one of pred, true, {', '.join(classes)}")
    return [classes.index(name)] * len(faces)


def compute_maps(clf, images: np.ndarray, methods: Sequence[str], target=None,
                 params: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``{method: N x H x W |map|}`` for uint8 faces, and the explained class per face."""
    x = clf.to_tensor(images)
    out: dict[str, np.ndarray] = {}
    targets = None
    for m in methods:
        meth = create_method(m, clf, **dict((params or {}).get(m, {})))
        result = meth.explain(x, target=target if targets is None else targets)
        targets = result.target
        out[m] = result.maps.abs().sum(1).cpu().numpy().astype(np.float32)
    if targets is None:
        with torch.inference_mode():
            targets = clf.net(x).argmax(1)
    return out, np.asarray(targets)


def _pages(n: int, per_page: int) -> list[range]:
    return [range(i, min(n, i + per_page)) for i in range(0, n, per_page)]


def explain_images(clf, faces: FaceSet, methods: Sequence[str], out_dir: str | Path, *, target: str = "pred",
                   params: Mapping[str, Mapping[str, Any]] | None = None, per_page: int = 24,
                   overlays: bool = True) -> dict[str, Any]:
    """Maps of every method for every face: ``grid.png`` (rows = faces, columns = the face and
    one overlay per method; split into pages of ``per_page`` rows), one overlay PNG per face
    and method, ``maps.npz`` (faces, maps, targets) and ``index.json``."""
    from .plot import overlay, save_grid, save_overlay

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tg = resolve_targets(clf, faces, target)
    maps, targets = compute_maps(clf, faces.images, methods, tg, params)
    probs = clf.predict_proba(faces.images)
    labels = list(clf.labels)
    items = []
    for i, name in enumerate(faces.names):
        item = {
            "name": name,
            "predicted": labels[int(probs[i].argmax())],
            "probability": round(float(probs[i].max()), 4),
            "explained_class": clf.classes[int(targets[i])],
            "true": faces.labels[i],
        }
        if overlays:
            item["overlays"] = {}
            for m in methods:
                p = save_overlay(out_dir / f"{_safe(name)}_{_safe(m)}.png", faces.images[i], maps[m][i])
                item["overlays"][m] = p.name
        items.append(item)
    grids = []
    pages = _pages(len(faces), per_page)
    for k, rows in enumerate(pages):
        cells = [[faces.images[i]] + [overlay(faces.images[i], maps[m][i]) for m in methods] for i in rows]
        row_labels = [f"{faces.names[i][:18]}\n{items[i]['predicted']} {items[i]['probability']:.2f}" for i in rows]
        fname = "grid.png" if len(pages) == 1 else f"grid_{k + 1:02d}.png"
        save_grid(cells, out_dir / fname, row_labels=row_labels, col_labels=["face"] + list(methods),
                  title=f"{clf.name or clf.arch}: saliency ({'predicted class' if tg is None else target})")
        grids.append(fname)
    with written_whole(out_dir / "maps.npz") as tmp:
        np.savez_compressed(tmp, faces=faces.images, targets=targets, **{f"map_{m}": maps[m] for m in methods})
    index = {"model": clf.name or clf.arch, "methods": list(methods), "target": target, "n": len(faces),
             "grids": grids, "faces": items, "skipped": [{"path": p, "problem": q} for p, q in faces.skipped]}
    write_json(out_dir / "index.json", index)
    return index


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(s)).strip("_") or "face"


# ----------------------------------------------------------------------------- over epochs


def epoch_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of a run's ``epoch_NNN.pt`` files, in order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModelError(f"{run_dir}: not a run folder")
    found = []
    for p in run_dir.glob("epoch_*.pt"):
        m = re.fullmatch(r"epoch_(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    if not found:
        raise ModelError(f"{run_dir}: no per-epoch checkpoints (epoch_NNN.pt); train with keep_epoch_checkpoints=true")
    return sorted(found)


def _val_acc(clf) -> float | None:
    m = clf.meta.get("metrics") if isinstance(clf.meta, dict) else None
    if isinstance(m, dict):
        for k in ("val_acc", "acc", "val_accuracy"):
            if isinstance(m.get(k), (int, float)):
                return float(m[k])
    return None


def _class_targets(clf, data_classes: Sequence[str], labels: np.ndarray) -> np.ndarray:
    classes = list(clf.classes)
    missing = sorted({data_classes[int(c)] for c in np.unique(labels)} - set(classes))
    if missing:
        raise ModelError(f"the model has no class {', '.join(missing)} (its classes: {', '.join(classes)})")
    return np.asarray([classes.index(data_classes[int(c)]) for c in labels], dtype=np.int64)


def epochs_study(run_dir: str | Path, data_path: str | Path, out_dir: str | Path, *, method: str = "vanilla",
                 split: str = "PublicTest", n_regions: int = 50, every: int = 1,
                 params: Mapping[str, Any] | None = None, progress: Progress = None) -> dict[str, Any]:
    """Saliency over training from a run's per-epoch checkpoints.

    Writes ``epochs_<method>.png`` (rows = epochs, first row the faces; columns = one typical
    face per class, explained for its true class), ``epochs_<method>_regions.png`` (share of
    saliency per region over epochs, dashed = area share) and ``epochs_<method>.json``.
    Region shares are means over ``n_regions`` faces per class (fixed seed), true-class maps.
    """
    from ..models.loader import classifier_from_checkpoint
    from .plot import overlay, plot_lines, save_grid

    method = get_method(method).name
    ckpts = epoch_checkpoints(run_dir)[:: max(1, every)]
    data = load_data(data_path, split)
    pick = pick_per_class(data.images, data.labels, 1, n_classes=len(data.classes))
    sub = stratified_subset(data.labels, n_regions)
    regions = template_regions(data.images.shape[1:])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = [[data.images[i] for i in pick]]
    row_labels = ["face"]
    records = []
    for epoch, path in ckpts:
        clf = classifier_from_checkpoint(path)
        tp = _class_targets(clf, data.classes, data.labels[pick])
        ts = _class_targets(clf, data.classes, data.labels[sub])
        mp, _ = compute_maps(clf, data.images[pick], [method], tp, {method: params or {}})
        ms, _ = compute_maps(clf, data.images[sub], [method], ts, {method: params or {}})
        shares = region_shares(ms[method], regions)
        per_class = {}
        for c in np.unique(data.labels[sub]):
            sel = data.labels[sub] == c
            per_class[data.classes[int(c)]] = {k: round(v, 4) for k, v in region_shares(ms[method][sel], regions).items()}
        acc = _val_acc(clf)
        records.append({"epoch": epoch, "checkpoint": str(path), "val_acc": acc,
                        "shares": {k: round(v, 4) for k, v in shares.items()},
                        "key_share": round(key_share(shares), 4), "per_class": per_class})
        cells.append([overlay(data.images[i], mp[method][j]) for j, i in enumerate(pick)])
        row_labels.append(f"epoch {epoch}" + (f"\nacc {acc:.3f}" if acc is not None else ""))
        if progress:
            progress(f"epoch {epoch}: key-region share {key_share(shares):.3f}")
    areas = region_areas(regions)
    col_labels = [data.classes[int(data.labels[i])] for i in pick]
    grid = save_grid(cells, out_dir / f"epochs_{method}.png", row_labels=row_labels, col_labels=col_labels,
                     title=f"{Path(run_dir).name}: {method} saliency over training (true class)")
    series = {r: [rec["shares"][r] for rec in records] for r in REGIONS}
    series["key regions"] = [rec["key_share"] for rec in records]
    lines = plot_lines([rec["epoch"] for rec in records], series, out_dir / f"epochs_{method}_regions.png",
                       title=f"{Path(run_dir).name}: {method} saliency share per face region (dashed: area)",
                       dashed={**{r: areas[r] for r in REGIONS}, "key regions": sum(areas[r] for r in KEY_REGIONS)})
    report = {"run": str(run_dir), "method": method, "params": dict(params or {}), "data": str(data_path),
              "split": split, "faces_per_class": n_regions, "n_faces": int(len(sub)),
              "sample_rows": [int(data.rows[i]) if data.rows is not None else int(i) for i in pick],
              "sample_classes": col_labels, "area_shares": {k: round(v, 4) for k, v in areas.items()},
              "key_area_share": round(sum(areas[r] for r in KEY_REGIONS), 4),
              "epochs": records, "grid": grid.name, "plot": lines.name}
    write_json(out_dir / f"epochs_{method}.json", report)
    return report


# ----------------------------------------------------------------------------- compare


def model_label(clf, spec: str) -> str:
    """A short row label for a model: the built-in name, or the run folder / file name."""
    p = Path(spec)
    if p.suffix in (".pt", ".safetensors"):
        return f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem
    return p.name or spec


def compare_models(models: Sequence[tuple[str, Any]], data_path: str | Path, out_dir: str | Path, *,
                   methods: Sequence[str] = ("vanilla",), split: str = "PublicTest", per_class: int = 1,
                   target: str = "true", params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The same typical faces through several models: ``compare.png`` with rows = models (x
    methods), columns = faces (first row: the faces), and ``compare.json`` with each model's
    prediction per face and its region shares on these faces."""
    from .plot import overlay, save_grid

    if not models:
        raise ModelError("no model to compare")
    faces = faces_from_data(data_path, split=split, per_class=per_class)
    regions = template_regions(faces.images.shape[1:])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = [list(faces.images)]
    row_labels = ["face"]
    report: dict[str, Any] = {"data": str(data_path), "split": split, "methods": list(methods), "target": target,
                              "faces": faces.names, "models": {}}
    for label, clf in models:
        tg = resolve_targets(clf, faces, target)
        maps, targets = compute_maps(clf, faces.images, methods, tg, params)
        probs = clf.predict_proba(faces.images)
        pred = [clf.labels[int(i)] for i in probs.argmax(1)]
        report["models"][label] = {
            "predicted": pred,
            "correct": int(sum(p == t for p, t in zip(pred, faces.labels))),
            "shares": {m: {k: round(v, 4) for k, v in region_shares(maps[m], regions).items()} for m in methods},
        }
        for m in methods:
            cells.append([overlay(faces.images[i], maps[m][i]) for i in range(len(faces))])
            row_labels.append(f"{label[:20]}\n{m}" if len(methods) > 1 else label[:22])
    col_labels = list(faces.labels)
    grid = save_grid(cells, out_dir / "compare.png", row_labels=row_labels, col_labels=col_labels,
                     title=f"the same faces, {len(models)} models ({'true' if target == 'true' else target} class)")
    report["grid"] = grid.name
    write_json(out_dir / "compare.json", report)
    return report


# ----------------------------------------------------------------------------- region table


def region_table(models: Sequence[tuple[str, Any]], data_path: str | Path, *, methods: Sequence[str] = ("vanilla",),
                 split: str = "PublicTest", per_class: int = 100, target: str = "true", seed: int = 0,
                 params: Mapping[str, Mapping[str, Any]] | None = None, progress: Progress = None) -> dict[str, Any]:
    """Share of saliency per face region, per model, method and class.

    Up to ``per_class`` faces of each class (fixed ``seed``), each explained for its true
    class (``target="true"``) or its predicted class (``"pred"``). ``area`` is each region's
    share of the image: a map that ignored the face's content would score exactly that, so
    ``share / area`` (``enrichment``) above 1 means the model looks there more than chance.
    """
    data = load_data(data_path, split)
    sub = stratified_subset(data.labels, per_class, seed)
    images, labels = data.images[sub], data.labels[sub]
    regions = template_regions(images.shape[1:])
    areas = region_areas(regions)
    report: dict[str, Any] = {"data": str(data_path), "split": split, "per_class": per_class, "target": target,
                              "n_faces": int(len(sub)), "regions": list(REGIONS),
                              "area": {k: round(v, 4) for k, v in areas.items()}, "models": {}}
    for label, clf in models:
        tg = _class_targets(clf, data.classes, labels) if target == "true" else None
        maps, targets = compute_maps(clf, images, methods, tg, params)
        probs = clf.predict_proba(images)
        truth = _class_targets(clf, data.classes, labels)
        acc = float((probs.argmax(1) == truth).mean())
        entry: dict[str, Any] = {"accuracy_on_these_faces": round(acc, 4), "methods": {}}
        for m in methods:
            per_class_shares = {}
            for c in np.unique(labels):
                sel = labels == c
                per_class_shares[data.classes[int(c)]] = {k: round(v, 4) for k, v in region_shares(maps[m][sel], regions).items()}
            allsh = region_shares(maps[m], regions)
            entry["methods"][m] = {
                "all": {k: round(v, 4) for k, v in allsh.items()},
                "per_class": per_class_shares,
                "enrichment": {k: round(allsh[k] / areas[k], 3) if areas[k] > 0 else None for k in allsh},
                "key_share": round(key_share(allsh), 4),
            }
        report["models"][label] = entry
        if progress:
            progress(f"regions: {label} done")
    return report


def region_markdown(rep: Mapping[str, Any]) -> str:
    """Markdown tables of :func:`region_table`: one per model and method, rows = classes."""
    regs = rep["regions"]
    names = {"face_other": "rest of face", "outside": "outside face"}
    head = "| class | " + " | ".join(names.get(r, r) for r in regs) + " | key regions |"
    sep = "| --- | " + " | ".join("---:" for _ in regs) + " | ---: |"
    area_key = sum(rep["area"][r] for r in KEY_REGIONS)
    lines = [
        f"Share of saliency (|map|) per face region; {rep['n_faces']} {rep['split']} faces (up to {rep['per_class']} "
        f"per class), each explained for its {'true' if rep['target'] == 'true' else 'predicted'} class. Regions: "
        "the 48x48 landmark template (`wildfer.explain.regions`). *area* = the region's share of the image, what a "
        "map blind to the face would give.",
        "",
    ]
    for model, entry in rep["models"].items():
        for m, e in entry["methods"].items():
            lines += [f"**{model}**, {m} (accuracy on these faces {entry['accuracy_on_these_faces']:.3f})", "", head, sep]
            for cls, sh in e["per_class"].items():
                lines.append(f"| {cls} | " + " | ".join(f"{sh[r]:.3f}" for r in regs) + f" | {key_share(sh):.3f} |")
            lines.append("| **all** | " + " | ".join(f"**{e['all'][r]:.3f}**" for r in regs) + f" | **{e['key_share']:.3f}** |")
            lines.append("| *area* | " + " | ".join(f"*{rep['area'][r]:.3f}*" for r in regs) + f" | *{area_key:.3f}* |")
            lines.append("")
    return "\n".join(lines)
