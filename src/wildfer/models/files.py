"""Model files: training checkpoints (``.pt``, torch's safe loader), weights graphs (``.onnx`` +
``.json``: a float ONNX graph whose initialisers are the network's state dict,
:func:`wildfer.models.onnx.weights_graph_bytes`) and ``.safetensors`` weights, each read into a
:class:`~wildfer.models.classifier.Classifier` or written from one. :mod:`wildfer.models.loader`
resolves names to these files; torch is imported only where a network is built or saved.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, import_torch, one_line
from ..jsonio import json_ready, write_json
from ..labels import FER2013_CLASSES
from ..paths import write_bytes_whole, written_whole
from .classifier import DEFAULT_PREPROCESS, Classifier

CHECKPOINT_FORMAT = "wildfer-checkpoint-v1"


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, net, *, arch: str, model_kwargs: dict, classes,
                    preprocess: dict | None = None, **extra) -> None:
    """Save a training checkpoint loadable with ``torch.load(weights_only=True)``."""
    torch = import_torch("saving a checkpoint")
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
    torch = import_torch(f"{path}: a checkpoint")
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


def _unwrap(net):
    return net.module if hasattr(net, "module") else net


def _build(arch: str, model_kwargs: dict, num_classes: int, in_chans: int, source: str | os.PathLike = ""):
    """The network a checkpoint or metadata file ``source`` describes (a :class:`ModelError` naming
    ``source`` when its architecture or keyword arguments build nothing)."""
    if not isinstance(model_kwargs or {}, dict):
        raise ModelError(f"{source}: model_kwargs must be a mapping, not {model_kwargs!r}")
    kw = dict(model_kwargs or {})  # create_model takes JSON's lists as tuples
    kw.pop("pretrained", None)  # ImageNet init file used in training; the weights come from the checkpoint
    in_chans = kw.pop("in_chans", in_chans)  # a config's model_kwargs may name it too (colour nets)
    import_torch(f"{source}: the torch network")
    from .registry import create_model

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

    clf, out, meta = _export_target(clf_or_ckpt, out, ".safetensors", card)
    state = {}
    for k, v in clf.net.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point() and "running_var" not in k and "running_mean" not in k:
            v = v.half()
        state[k] = v
    with written_whole(str(out) + ".safetensors") as tmp:
        tmp.write_bytes(save(state))  # bytes first: a full disk is then a plain OSError
    write_json(str(out) + ".json", meta)
    return Path(str(out) + ".safetensors")


def export_graph_weights(clf_or_ckpt, out: str | os.PathLike, *, half: bool = True, card: dict | None = None) -> Path:
    """Write ``out.onnx``, the weights graph (:func:`wildfer.models.onnx.weights_graph_bytes`:
    the float network as an ONNX graph whose initialisers are its state dict, fp16 by default),
    and ``out.json`` metadata: what a built-in ships, one file for onnxruntime and torch."""
    from .onnx import weights_graph_bytes

    clf, out, meta = _export_target(clf_or_ckpt, out, ".onnx", card)
    path = write_bytes_whole(str(out) + ".onnx", weights_graph_bytes(clf, half=half, meta=meta))
    write_json(str(out) + ".json", meta)
    return path


def _export_target(clf_or_ckpt, out: str | os.PathLike, suffix: str, card: dict | None):
    """What an export writes: the classifier (a checkpoint path is loaded), the output path
    without ``suffix`` (its folder made) and the metadata JSON, ``card`` on top."""
    clf = clf_or_ckpt if isinstance(clf_or_ckpt, Classifier) else classifier_from_checkpoint(clf_or_ckpt)
    out = Path(out)
    if out.suffix == suffix:
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "arch": clf.arch,
        "model_kwargs": json_ready(clf.model_kwargs),
        "classes": list(clf.classes),
        "in_chans": int(getattr(clf.net, "in_chans", 1)),
        "preprocess": clf.preprocess,
    }
    meta.update(card or {})
    return clf, out, meta


def _read_meta(weights: Path) -> dict[str, Any]:
    """The metadata JSON beside a weights file (``W.json`` for ``W.safetensors`` or ``W.onnx``)."""
    if not weights.exists():
        raise ModelError(f"{weights}: weights file not found")
    meta_path = weights.with_suffix(".json")
    if not meta_path.exists():
        raise ModelError(f"{weights}: metadata {meta_path.name} missing beside the weights")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ModelError(f"{meta_path}: unreadable weights metadata ({one_line(e)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("arch"), str):
        raise ModelError(f"{meta_path}: weights metadata must be a JSON object naming the \"arch\"")
    return meta


def _net_with(meta: dict, state: dict, source: Path):
    """The network ``meta`` describes with the tensors of ``state`` (numpy arrays or tensors),
    each cast to the network's own dtype."""
    torch = import_torch(f"{source}: the torch network")
    classes = tuple(meta.get("classes") or FER2013_CLASSES)
    net = _build(meta["arch"], meta.get("model_kwargs", {}), len(classes), int(meta.get("in_chans", 1)),
                 source.with_suffix(".json"))
    ref = net.state_dict()
    state = {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in state.items()}
    state = {k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()}
    for k, v in ref.items():  # a counter the graph has no use for
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"{source}: weights do not fit architecture {meta['arch']!r} ({one_line(e)})") from None
    return net


def classifier_from_safetensors(path: str | os.PathLike, name: str = "") -> Classifier:
    path = Path(path)
    meta = _read_meta(path)
    import_torch(f"{path}: safetensors weights")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path}: cannot read safetensors ({one_line(e)})") from None
    net = _net_with(meta, state, path)
    return Classifier(net, tuple(meta.get("classes") or FER2013_CLASSES),
                      dict(meta.get("preprocess") or DEFAULT_PREPROCESS), name=name or str(path),
                      arch=meta["arch"], model_kwargs=meta.get("model_kwargs", {}), meta=meta)


def classifier_from_graph(path: str | os.PathLike, name: str = "") -> Classifier:
    """A weights graph (``W.onnx`` with ``W.json`` beside it) as a classifier that builds its torch
    network from the graph's initialisers when asked (:attr:`Classifier.net`); nothing is read
    until a backend is chosen (:func:`load_model`)."""
    path = Path(path)
    meta = _read_meta(path)

    def build():
        from .onnx import graph_state_dict

        return _net_with(meta, graph_state_dict(path), path)

    return Classifier(None, tuple(meta.get("classes") or FER2013_CLASSES),
                      dict(meta.get("preprocess") or DEFAULT_PREPROCESS), name=name or str(path),
                      arch=meta["arch"], model_kwargs=meta.get("model_kwargs", {}), meta=meta, graph=str(path),
                      build=build)
