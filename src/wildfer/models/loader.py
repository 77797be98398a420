"""Load and save models: training checkpoints (``.pt``), shipped weights (``.safetensors`` +
``.json`` metadata) and the built-in models inside the package (``"default"``, ``"fast"``,
``"ferplus"``, ...), each as a :class:`~wildfer.models.classifier.Classifier`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import ModelError, one_line  # noqa: F401 - one_line re-exported: where callers have found it
from ..jsonio import json_ready, write_json
from ..labels import FER2013_CLASSES, class_alignment
from ..paths import written_whole
from . import PIPELINE_MODEL  # noqa: F401 - re-exported: where callers have always found it
from .classifier import DEFAULT_PREPROCESS, Classifier, check_backend, resolve_device
from .ensemble import ensemble_classifier as _combine
from .ensemble import is_ensemble_spec, load_spec_members
from .ensemble import load_ensemble_spec as _load_spec_file
from .registry import create_model, list_models

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def builtin_names() -> tuple[str, ...]:
    """The built-in models: one per JSON object naming an ``"arch"`` in :data:`WEIGHTS_DIR`
    (``NAME.json``, the metadata of ``NAME.safetensors``, or an ensemble spec with no weights of
    its own, like ``accurate``), ordered by its ``"order"`` number (the README's order; none:
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
CHECKPOINT_FORMAT = "wildfer-checkpoint-v1"


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, net: nn.Module, *, arch: str, model_kwargs: dict, classes,
                    preprocess: dict | None = None, **extra) -> None:
    """Save a training checkpoint loadable with ``torch.load(weights_only=True)``."""
    state = {k: v.detach().cpu() for k, v in _unwrap(net).state_dict().items()}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "model_kwargs": json_ready(model_kwargs),
        "classes": list(classes),
        "in_chans": int(getattr(_unwrap(net), "in_chans", 1)),
        "preprocess": dict(preprocess or DEFAULT_PREPROCESS),
        "state_dict": state,
    }
    ckpt.update(extra)
    # serialised in memory first: torch.save on a full disk fails with a RuntimeError that
    # names no file; a plain write fails with the OSError that says what happened
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with written_whole(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def load_failure_reason(e: Exception, path: str | os.PathLike | None = None) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in full and on one line: for the safe
    unpickler's refusals its own explanation, without torch's advice on loading unsafely; with
    ``path``, whether the file is a PyTorch file at all (a zip archive or a pickle)."""
    text = str(e)
    if isinstance(e, EOFError):
        return "the file is empty or cut short"
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation of torch.load", 1)[0]
        reason = "holds something other than tensors and plain values: " + one_line(reason)
    else:
        reason = f"{type(e).__name__}: {one_line(text)}" if text.strip() else type(e).__name__
    if path is not None:
        import zipfile

        try:
            with open(path, "rb") as f:
                head = f.read(2)
            is_torch = zipfile.is_zipfile(path) or head[:1] == b"\x80"  # torch.save's zip, or a legacy pickle
        except OSError:
            is_torch = True
        if not is_torch:
            return f"not a PyTorch file: neither a zip archive nor a pickle; {reason}"
    return reason


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The dict a wildfer checkpoint holds, loaded with ``torch.load(weights_only=True)``; a
    :class:`ModelError` naming the file and the reason for anything else."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles: the error below says what matters
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file for the user
        raise ModelError(f"{path}: not a readable wildfer checkpoint ({load_failure_reason(e, path)})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
        got = f"a {type(ckpt).__name__}" if not isinstance(ckpt, dict) else "a dict without them"
        raise ModelError(f"{path}: not a wildfer checkpoint (no 'arch' / 'state_dict'; it holds {got})")
    if not isinstance(ckpt["state_dict"], dict) or not isinstance(ckpt["arch"], str):
        raise ModelError(f"{path}: not a wildfer checkpoint ('arch' must be a name, 'state_dict' a mapping of tensors)")
    return ckpt


def _unwrap(net: nn.Module) -> nn.Module:
    return net.module if hasattr(net, "module") else net


def _build(arch: str, model_kwargs: dict, num_classes: int, in_chans: int, source: str | os.PathLike = "") -> nn.Module:
    """The network a checkpoint or metadata file ``source`` describes (a :class:`ModelError` naming
    ``source`` when its architecture or keyword arguments build nothing)."""
    if not isinstance(model_kwargs or {}, dict):
        raise ModelError(f"{source}: model_kwargs must be a mapping, not {model_kwargs!r}")
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (model_kwargs or {}).items()}
    kw.pop("pretrained", None)  # ImageNet init file used in training; the weights come from the checkpoint
    in_chans = kw.pop("in_chans", in_chans)  # a config's model_kwargs may name it too (colour nets)
    try:
        return create_model(arch, num_classes=num_classes, in_chans=in_chans, **kw)
    except ModelError as e:
        raise ModelError(f"{source}: {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{source}: cannot build architecture {arch!r} with {kw} ({one_line(e)})") from None


def classifier_from_checkpoint(path: str | os.PathLike) -> Classifier:
    ckpt = read_checkpoint(path)
    classes = tuple(ckpt.get("classes") or FER2013_CLASSES)
    net = _build(ckpt["arch"], ckpt.get("model_kwargs", {}), len(classes), int(ckpt.get("in_chans", 1)), path)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ModelError(f"{path}: weights do not fit architecture {ckpt['arch']!r} ({one_line(e)})") from None
    meta = {k: v for k, v in ckpt.items() if k in ("epoch", "metrics", "config")}
    return Classifier(net, classes, dict(ckpt.get("preprocess") or DEFAULT_PREPROCESS), name=str(path),
                      arch=ckpt["arch"], model_kwargs=ckpt.get("model_kwargs", {}), meta=meta)


# ----------------------------------------------------------------------------- shipped weights


def export_weights(clf_or_ckpt, out: str | os.PathLike, *, half: bool = True, card: dict | None = None) -> Path:
    """Write ``out.safetensors`` (fp16 by default) and ``out.json`` metadata."""
    from safetensors.torch import save

    clf = clf_or_ckpt if isinstance(clf_or_ckpt, Classifier) else classifier_from_checkpoint(clf_or_ckpt)
    out = Path(out)
    if out.suffix == ".safetensors":
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in clf.net.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point() and "running_var" not in k and "running_mean" not in k:
            v = v.half()
        state[k] = v
    with written_whole(str(out) + ".safetensors") as tmp:
        tmp.write_bytes(save(state))  # bytes first: a full disk is then a plain OSError
    meta = {
        "arch": clf.arch,
        "model_kwargs": json_ready(clf.model_kwargs),
        "classes": list(clf.classes),
        "in_chans": int(getattr(clf.net, "in_chans", 1)),
        "preprocess": clf.preprocess,
    }
    meta.update(card or {})
    write_json(str(out) + ".json", meta)
    return Path(str(out) + ".safetensors")


def classifier_from_safetensors(path: str | os.PathLike, name: str = "") -> Classifier:
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.exists():
        raise ModelError(f"{path}: weights file not found")
    if not meta_path.exists():
        raise ModelError(f"{path}: metadata {meta_path.name} missing beside the weights")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ModelError(f"{meta_path}: unreadable weights metadata ({one_line(e)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("arch"), str):
        raise ModelError(f"{meta_path}: weights metadata must be a JSON object naming the \"arch\"")
    classes = tuple(meta.get("classes") or FER2013_CLASSES)
    net = _build(meta["arch"], meta.get("model_kwargs", {}), len(classes), int(meta.get("in_chans", 1)), meta_path)
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path}: cannot read safetensors ({one_line(e)})") from None
    ref = net.state_dict()
    state = {k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit architecture {meta['arch']!r} ({one_line(e)})") from None
    return Classifier(net, classes, dict(meta.get("preprocess") or DEFAULT_PREPROCESS), name=name or str(path),
                      arch=meta["arch"], model_kwargs=meta.get("model_kwargs", {}), meta=meta)


def _builtin_available(name: str, _seen: frozenset[str] = frozenset()) -> bool:
    if (WEIGHTS_DIR / f"{name}.safetensors").exists():
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
    weights = WEIGHTS_DIR / f"{name}.safetensors"
    card = WEIGHTS_DIR / str(meta.get("model_card") or f"{name}.md")
    return {
        "name": name,
        "available": _builtin_available(name),
        "arch": meta.get("arch", ""),
        "members": meta.get("members"),
        "classes": len(meta.get("classes") or FER2013_CLASSES),
        "weights_mb": round(weights.stat().st_size / 1e6, 1) if weights.exists() else 0.0,
        "val_acc": meta.get("best_val_acc", meta.get("publictest_accuracy")),
        "val_set": meta.get("val_set", "PublicTest"),
        "card": str(card) if card.exists() else None,
        "card_text": card.read_text() if card.exists() else "",
    }


def load_model(name_or_path: str | os.PathLike = "default", *, classes: str | None = None,
               backend: str = "torch", device: Any = "cpu") -> Classifier:
    """A built-in name (``default``, ``fast``, ``ferplus``, ``default_resnet``, ``accurate``, ``wild``), a
    ``.pt`` checkpoint, a ``.safetensors`` file (with its ``.json`` beside it), a run folder or
    an ensemble spec ``.json`` (:mod:`wildfer.models.ensemble`): the first of :data:`RESOLVERS`
    that accepts it loads it. Nothing is downloaded.

    ``classes="fer2013"`` maps an 8-class FER+ model's output to FER2013's 7 classes
    (contempt folded away, probabilities renormalised).

    ``backend``: ``"torch"`` (default), ``"onnx"`` (an export on onnxruntime) or ``"int8"``
    (the model's int8 graph: shipped for some built-ins, else ``<file>.int8.onnx`` beside the
    weights file; :mod:`wildfer.models.quantize`).

    ``device``: where it computes, ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``
    (a CUDA GPU when the backend can use one, else the CPU; :func:`resolve_device`), checked
    before anything is read.
    """
    if classes and classes.lower() != "fer2013":
        raise ModelError(f"classes={classes!r}: the only class mapping is 'fer2013' (FER2013's 7 classes)")
    target = resolve_device(device, check_backend(backend))
    clf = _resolve(str(name_or_path))
    if classes:
        clf = with_fer2013_classes(clf)
    if backend == "onnx":
        return switch_backend(clf, "onnx", device=target)
    if backend == "int8":
        from .quantize import attach_int8

        if len(clf.face_views) > 1:  # only an ensemble of members that cut faces differently
            return _members_on(clf, "int8")
        return attach_int8(clf, source=name_or_path)
    return _placed(clf, target)


def switch_backend(clf: Classifier, backend: str, **kw) -> Classifier:
    """``clf.with_backend(backend, **kw)``, except that an ensemble whose members cut faces
    differently gets each member on its own graph (:func:`_members_on`): one graph cannot take
    two crops of a face."""
    if backend in ("onnx", "int8") and len(clf.face_views) > 1:
        return _members_on(clf, backend)
    return clf.with_backend(backend, **kw)


def ensemble_classifier(members, **kw) -> Classifier:
    """An ensemble of ``members`` (built-in names, checkpoint, weights or spec paths, or
    classifiers), names loaded with :func:`load_model`; the keywords of
    :func:`wildfer.models.ensemble.ensemble_classifier` (``weights``, ``tta``, ``crop``,
    ``name``, ``classes``, ``meta``, ``temperature``)."""
    return _combine(members, load=load_model, **kw)


def load_ensemble_spec(path: str | os.PathLike, name: str = "") -> Classifier:
    """The classifier an ensemble spec file describes, its members loaded with
    :func:`load_model` (paths relative to the file; built-in names as they are)."""
    return _load_spec_file(path, name, load=load_model, builtins=builtin_names())


def _members_on(clf: Classifier, backend: str) -> Classifier:
    """An ensemble whose members cut faces differently, each member on its own ``backend``
    graph (ONNX or int8), loaded again by name."""
    kw = clf.model_kwargs
    members = [load_model(m, backend=backend) for m in kw["members"]]
    return ensemble_classifier(members, weights=kw.get("weights"), tta=kw.get("tta"), crop=kw.get("crop", 44),
                               name=clf.name, classes=clf.classes, temperature=clf.preprocess.get("temperature"),
                               meta={k: v for k, v in clf.meta.items() if k not in kw})


def _resolve(source: str) -> Classifier:
    for accepts, load in RESOLVERS:
        if accepts(source):
            return load(source)
    raise ModelError(f"{source}: no such built-in model, checkpoint or weights file")


def _load_builtin(name: str) -> Classifier:
    weights, spec = WEIGHTS_DIR / f"{name}.safetensors", WEIGHTS_DIR / f"{name}.json"
    if weights.exists():
        return classifier_from_safetensors(weights, name=name)
    if is_ensemble_spec(spec):
        return load_ensemble_spec(spec, name=name)
    raise ModelError(f"built-in model {name!r} is not in this installation (weights {weights} missing); "
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


#: what :func:`load_model` accepts, as ``(accepts(source), load(source))`` pairs tried in order
RESOLVERS: tuple[tuple[Callable[[str], bool], Callable[[str], Classifier]], ...] = (
    (lambda s: s in builtin_names(), _load_builtin),
    (lambda s: s.endswith(".json") and is_ensemble_spec(s), load_ensemble_spec),
    (lambda s: s.endswith(".safetensors"), classifier_from_safetensors),
    (lambda s: s.endswith(".onnx") and os.path.isfile(s), _load_quantised_graph),
    (os.path.isdir, _load_run_folder),
    (os.path.exists, classifier_from_checkpoint),
    (lambda s: s in list_models(), _refuse_architecture),
)


def _placed(clf: Classifier, device: str) -> Classifier:
    """A classifier just loaded, on the resolved ``device``: its network is moved there, not
    copied (nothing else holds it)."""
    clf.net.to(device)
    return dataclasses.replace(clf, device=device)


def with_fer2013_classes(clf: Classifier) -> Classifier:
    """Fold a model's classes onto FER2013's 7 (drops classes FER2013 lacks, e.g. contempt)."""
    if tuple(clf.classes) == FER2013_CLASSES:
        return clf
    return dataclasses.replace(clf, class_map=class_alignment(clf.classes, FER2013_CLASSES).astype(np.float32),
                               out_classes=FER2013_CLASSES)
