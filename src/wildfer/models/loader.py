"""Load and save models: training checkpoints (``.pt``), weights graphs (``.onnx`` + ``.json``
metadata: a float ONNX graph whose initialisers are the network's weights under their own names,
:func:`wildfer.models.onnx.weights_graph_bytes`), ``.safetensors`` weights, and the built-in
models inside the package (``"default"``, ``"fast"``, ``"ferplus"``, ...), each as a
:class:`~wildfer.models.classifier.Classifier`.

A built-in needs no torch: it runs its graph on onnxruntime (backend ``onnx``, or its int8
graph), and reads the same weights into its torch network only when that is asked for.
Checkpoints are torch files and need torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, import_torch, one_line  # noqa: F401 - one_line re-exported: where callers have found it
from ..labels import FER2013_CLASSES, class_alignment
from . import PIPELINE_MODEL  # noqa: F401 - re-exported for callers
from .classifier import DEFAULT_PREPROCESS, BACKENDS, MIXED, Classifier, check_backend, resolve_device  # noqa: F401 - DEFAULT_PREPROCESS re-exported
from .ensemble import ensemble_classifier as _combine
from .ensemble import ENSEMBLE_ARCH, is_ensemble_spec, load_spec_members, spec_backends
from .ensemble import load_ensemble_spec as _load_spec_file

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def builtin_names() -> tuple[str, ...]:
    """The built-in models: one per JSON object naming an ``"arch"`` in :data:`WEIGHTS_DIR`
    (``NAME.json``, the metadata of ``NAME.safetensors``, or an ensemble spec with no weights of
    its own, like ``accurate``; ``NAME.onnx`` holds the weights of the others), ordered by its ``"order"`` number (the README's order; none:
    last), then by name."""
    found = []
    for path in WEIGHTS_DIR.glob("*.json"):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("arch"), str):
            order = meta.get("order")
            found.append((order if isinstance(order, int) and not isinstance(order, bool) else float("inf"), path.stem))
    return tuple(name for _, name in sorted(found))


#: the built-in models of this installation's weights folder, as :func:`builtin_names` finds them
BUILTIN = builtin_names()
from .files import (  # noqa: F401 - re-exported for callers
    CHECKPOINT_FORMAT,
    classifier_from_checkpoint,
    classifier_from_graph,
    classifier_from_safetensors,
    export_graph_weights,
    export_weights,
    load_failure_reason,
    read_checkpoint,
    save_checkpoint,
)


def _weights_file(name: str) -> Path | None:
    """A built-in's weights: its graph, or a ``.safetensors`` file; ``None`` for an ensemble."""
    for suffix in (".onnx", ".safetensors"):
        if (WEIGHTS_DIR / f"{name}{suffix}").exists():
            return WEIGHTS_DIR / f"{name}{suffix}"
    return None


def _builtin_available(name: str, _seen: frozenset[str] = frozenset()) -> bool:
    if _weights_file(name) is not None:
        return True
    spec = WEIGHTS_DIR / f"{name}.json"
    if name in _seen or not is_ensemble_spec(spec):  # a spec that lists itself (through others) never loads
        return False
    names = builtin_names()
    return all(_builtin_available(m, _seen | {name}) for m in load_spec_members(spec) if m in names)


def builtin_models() -> list[str]:
    """Names of built-in models whose weights ship in this installation."""
    return [n for n in builtin_names() if _builtin_available(n)]


def builtin_info(name: str) -> dict[str, Any]:
    """What the installation says about a built-in model without building it: its metadata
    JSON (architecture or ensemble members, classes, training facts), the weights' size and
    the model card's path and text."""
    names = builtin_names()
    if name not in names:
        raise ModelError(f"{name!r} is not a built-in model ({', '.join(names)})")
    meta_path = WEIGHTS_DIR / f"{name}.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    weights = _weights_file(name)
    card = WEIGHTS_DIR / str(meta.get("model_card") or f"{name}.md")
    return {
        "name": name,
        "available": _builtin_available(name),
        "arch": meta.get("arch", ""),
        "members": meta.get("members"),
        "classes": len(meta.get("classes") or FER2013_CLASSES),
        "weights_mb": round(weights.stat().st_size / 1e6, 1) if weights is not None else 0.0,
        "backend": default_backend(name),
        "member_backends": member_backends(name),
        "val_acc": meta.get("best_val_acc", meta.get("publictest_accuracy")),
        "val_set": meta.get("val_set", "PublicTest"),
        "card": str(card) if card.exists() else None,
        "card_text": card.read_text() if card.exists() else "",
    }


def default_backend(name_or_path: str | os.PathLike, _seen: frozenset[str] = frozenset()) -> str:
    """The backend ``backend="auto"`` picks: a built-in's ``"backend"`` from its metadata (an
    ensemble whose int8 graphs read every dev set within half a point of its float networks says
    ``int8``), or ``mixed`` for a built-in ensemble whose ``"backends"`` put some members on
    float graphs and some on int8 ones, else ``onnx`` for anything that has a float graph
    (built-ins, weights graphs, ensembles of them), else ``torch`` (checkpoints, safetensors
    files)."""
    source = str(name_or_path)
    names = builtin_names()
    if source in names:
        try:
            meta = json.loads((WEIGHTS_DIR / f"{source}.json").read_text())
        except (OSError, ValueError, RecursionError):
            meta = {}
        if meta.get("backend") in BACKENDS:
            return meta["backend"]
        chosen = set(_spec_backends(source, meta) or ())
        if chosen and chosen <= {"onnx", "int8"}:
            return chosen.pop() if len(chosen) == 1 else MIXED
        weights = _weights_file(source)
        if weights is not None:
            return "onnx" if weights.suffix == ".onnx" else "torch"
        members = load_spec_members(WEIGHTS_DIR / f"{source}.json")
        if source in _seen or not members:  # a spec that lists itself never loads: the loader says why
            return "torch"
        graphs = all(m in names and default_backend(m, _seen | {source}) != "torch" for m in members)
        return "onnx" if graphs else "torch"
    if source.endswith(".onnx") and Path(source).with_suffix(".json").is_file():
        return "onnx"
    return "torch"


def member_backends(name: str) -> dict[str, str] | None:
    """What ``backend="auto"`` runs each member of the built-in ensemble ``name`` on, when its
    spec names that per member (``"backends"``); ``None`` otherwise."""
    if name not in builtin_names():
        return None
    try:
        spec = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    backends = _spec_backends(name, spec)
    return dict(zip(spec["members"], backends)) if backends else None


def _spec_backends(name: str, meta: Any) -> list[str] | None:
    """The ``"backends"`` of the built-in ensemble ``name`` whose spec is ``meta``, checked
    (:func:`~wildfer.models.ensemble.spec_backends`); ``None`` for other built-ins."""
    if not isinstance(meta, dict) or meta.get("arch") != ENSEMBLE_ARCH:
        return None
    return spec_backends(meta, WEIGHTS_DIR / f"{name}.json")


def auto_backend(name_or_path: str | os.PathLike, device: Any = "cpu") -> str:
    """What ``backend="auto"`` runs ``name_or_path`` on for ``device``: its
    :func:`default_backend`, except that a CUDA GPU asked for by name (``"cuda"``, ``"cuda:N"``)
    gets the float graph on onnxruntime's CUDA provider, else torch's GPU (int8 graphs run on
    the CPU only); a :class:`ModelError` naming CUDA when neither can use one. ``"auto"`` and
    ``"cpu"`` never import torch."""
    from .runtime import has_torch

    backend = default_backend(name_or_path)
    name = str(device).strip().lower() if device is not None else "cpu"
    if backend == "torch" or not name.startswith("cuda"):
        return backend
    try:
        resolve_device(name, "onnx")
        return "onnx"
    except ModelError:
        if not has_torch():
            raise
    resolve_device(name, "torch")
    return "torch"


def load_model(name_or_path: str | os.PathLike = "default", *, classes: str | None = None,
               backend: str = "auto", device: Any = "cpu", threads: int | None = None) -> Classifier:
    """A built-in name (``default``, ``fast``, ``ferplus``, ``default_resnet``, ``accurate``, ``wild``, ...),
    a ``.pt`` checkpoint, a weights graph ``.onnx`` or a ``.safetensors`` file (with its ``.json``
    beside it), a run folder or an ensemble spec ``.json`` (:mod:`wildfer.models.ensemble`): the
    first of :data:`RESOLVERS` that accepts it loads it. Nothing is downloaded.

    ``classes="fer2013"`` maps an 8-class FER+ model's output to FER2013's 7 classes
    (contempt folded away, probabilities renormalised).

    ``backend``: ``"auto"`` (default: :func:`default_backend`, so built-ins run on onnxruntime
    and need no torch), ``"torch"``, ``"onnx"`` (the float graph on onnxruntime: the shipped
    one, else an export) or ``"int8"`` (the model's int8 graph: shipped for some built-ins, else
    ``<file>.int8.onnx`` beside the weights file; :mod:`wildfer.models.quantize`).

    ``device``: where it computes, ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``
    (a CUDA GPU when the backend can use one, else the CPU; :func:`resolve_device`), checked
    before anything is read. ``threads``: onnxruntime's intra-op threads for the graph backends
    (``None``: its default).
    """
    if classes and classes.lower() != "fer2013":
        raise ModelError(f"classes={classes!r}: the only class mapping is 'fer2013' (FER2013's 7 classes)")
    spec = _ensemble_spec(str(name_or_path))
    if spec is not None:  # each member loaded once, on the backend asked for (auto: its own, or the spec's)
        return _load_ensemble(spec, str(name_or_path), classes, backend, device, threads)
    if backend == "auto":
        backend = auto_backend(name_or_path, device)
    target = resolve_device(device, check_backend(backend))
    clf = _resolve(str(name_or_path))
    if classes:
        clf = with_fer2013_classes(clf)
    if backend == "onnx":
        return switch_backend(clf, "onnx", device=target, threads=threads)
    if backend == "int8":
        from .quantize import attach_int8

        return attach_int8(clf, threads=threads, source=name_or_path)
    return _placed(clf, target)


def _ensemble_spec(source: str) -> Path | None:
    """The spec file of an ensemble ``source`` names: a built-in ensemble or a spec ``.json``."""
    if source in builtin_names():
        spec = WEIGHTS_DIR / f"{source}.json"
        return spec if _weights_file(source) is None and is_ensemble_spec(spec) else None
    return Path(source) if source.endswith(".json") and is_ensemble_spec(source) else None


def _load_ensemble(spec: Path, source: str, classes: str | None, backend: str, device: Any,
                   threads: int | None) -> Classifier:
    """An ensemble spec loaded with every member on ``backend``: for ``auto``, the backend the
    spec names (``int8`` where its int8 graphs keep every dev set within half a point; with
    ``"backends"``, each member's entry) unless a GPU is asked for by name, else each member's
    own (:func:`auto_backend`)."""
    if backend == "auto" and default_backend(source) != "torch":
        backend = auto_backend(source, device)
    if backend == MIXED:
        resolve_device(device, MIXED)
    elif backend != "auto":
        resolve_device(device, check_backend(backend))

    def member(m: str, chosen: str | None) -> Classifier:
        own = (chosen or "auto") if backend in ("auto", MIXED) else backend
        return load_model(m, backend=own, device=device, threads=threads)

    name = source if source in builtin_names() else ""
    clf = _load_spec_file(spec, name, load=member, builtins=builtin_names())
    return with_fer2013_classes(clf) if classes else clf


def switch_backend(clf: Classifier, backend: str, **kw) -> Classifier:
    """``clf.with_backend(backend, **kw)``, except that an ensemble whose members cut faces
    differently gets each member on its own graph (:func:`_members_on`): one graph cannot take
    two crops of a face."""
    if backend in ("onnx", "int8") and clf.arch == "ensemble":
        if clf.runner is not None and clf.backend == backend and not kw.get("threads") \
                and kw.get("device") in (None, clf.device):
            return clf  # its members compute on those graphs already
        if len(clf.face_views) > 1 or clf.runner is not None:
            return _members_on(clf, backend, kw.get("threads"))
    return clf.with_backend(backend, **kw)


def ensemble_classifier(members, **kw) -> Classifier:
    """An ensemble of ``members`` (built-in names, checkpoint, weights or spec paths, or
    classifiers), names loaded with :func:`load_model`; the keywords of
    :func:`wildfer.models.ensemble.ensemble_classifier` (``weights``, ``tta``, ``crop``,
    ``name``, ``classes``, ``meta``, ``temperature``, ``class_bias``)."""
    return _combine(members, load=load_model, **kw)


def load_ensemble_spec(path: str | os.PathLike, name: str = "") -> Classifier:
    """The classifier an ensemble spec file describes, its members loaded with
    :func:`load_model` (paths relative to the file; built-in names as they are)."""
    return _load_spec_file(path, name, load=lambda m, chosen: load_model(m, backend=chosen or "auto"),
                           builtins=builtin_names())


def _members_on(clf: Classifier, backend: str, threads: int | None = None) -> Classifier:
    """An ensemble with each member loaded again by name on ``backend``: on graphs (ONNX or
    int8) the ensemble then computes with numpy (:class:`~wildfer.models.ensemble.GraphEnsemble`),
    on torch it is one network."""
    kw = clf.model_kwargs
    members = [load_model(m, backend=backend, threads=threads) for m in kw["members"]]
    return ensemble_classifier(members, weights=kw.get("weights"), tta=kw.get("tta"), crop=kw.get("crop", 44),
                               name=clf.name, classes=clf.classes, temperature=clf.preprocess.get("temperature"),
                               class_bias=clf.preprocess.get("class_bias"),
                               meta={k: v for k, v in clf.meta.items() if k not in kw})


def _resolve(source: str) -> Classifier:
    for accepts, load in RESOLVERS:
        if accepts(source):
            return load(source)
    raise ModelError(f"{source}: no such built-in model, checkpoint or weights file")


def _load_builtin(name: str) -> Classifier:
    weights = _weights_file(name)
    if weights is not None and weights.suffix == ".onnx":
        return classifier_from_graph(weights, name=name)
    if weights is not None:
        return classifier_from_safetensors(weights, name=name)
    raise ModelError(f"built-in model {name!r} is not in this installation (weights {WEIGHTS_DIR / name}.onnx missing); "
                     f"available: {', '.join(builtin_models()) or 'none'}")


def _load_run_folder(folder: str) -> Classifier:
    for name in ("best.pt", "last.pt"):
        if (Path(folder) / name).exists():
            return classifier_from_checkpoint(Path(folder) / name)
    raise ModelError(f"{folder}: folder has no best.pt or last.pt checkpoint")


def _load_quantised_graph(path: str) -> Classifier:
    """The OpenCV model zoo's int8 MobileFaceNet graph, dequantised into a float network
    (:mod:`wildfer.models.convert`): fine-tune from it with ``init=`` or use it as it is."""
    from .convert import ZOO_PREPROCESS, mobilefacenet_from_onnx

    net, classes = mobilefacenet_from_onnx(path)
    return Classifier(net, classes, dict(ZOO_PREPROCESS), name=str(path), arch="mobilefacenet",
                      meta={"converted_from": str(path)})


def _refuse_architecture(arch: str) -> Classifier:
    raise ModelError(
        f"{arch!r} is an architecture, not trained weights: train it with 'wildfer train' and pass the "
        f"checkpoint, or use a built-in model ({', '.join(builtin_names())})"
    )


#: what :func:`load_model` accepts, as ``(accepts(source), load(source))`` pairs tried in order,
#: after ensemble specs (built-in or ``.json``: :func:`_ensemble_spec`), whose members are loaded
#: on the backend asked for
RESOLVERS: tuple[tuple[Callable[[str], bool], Callable[[str], Classifier]], ...] = (
    (lambda s: s in builtin_names(), _load_builtin),
    (lambda s: s.endswith(".safetensors"), classifier_from_safetensors),
    (lambda s: s.endswith(".onnx") and os.path.isfile(s) and os.path.isfile(s[:-5] + ".json"), classifier_from_graph),
    (lambda s: s.endswith(".onnx") and os.path.isfile(s), _load_quantised_graph),
    (os.path.isdir, _load_run_folder),
    (os.path.exists, classifier_from_checkpoint),
    (lambda s: s in _architectures(), _refuse_architecture),
)


def _architectures() -> list[str]:
    try:
        import_torch("the architecture registry")
    except ModelError:
        return []
    from .registry import list_models

    return list_models()


def _placed(clf: Classifier, device: str) -> Classifier:
    """A classifier just loaded, on the resolved ``device``: its network is moved there, not
    copied (nothing else holds it). A network still to be read from its graph is made on the
    CPU when first used."""
    if device != "cpu" or clf.has_net:
        clf.net.to(device)
    return dataclasses.replace(clf, device=device)


def with_fer2013_classes(clf: Classifier) -> Classifier:
    """Fold a model's classes onto FER2013's 7 (drops classes FER2013 lacks, e.g. contempt)."""
    if tuple(clf.classes) == FER2013_CLASSES:
        return clf
    return dataclasses.replace(clf, class_map=class_alignment(clf.classes, FER2013_CLASSES).astype(np.float32),
                               out_classes=FER2013_CLASSES)
