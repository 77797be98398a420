"""Ensembles with test-time augmentation as one network, so that every stage (evaluate, the wild
pipeline, the service, ONNX export, gradient saliency) can use them like a single model.

:class:`~wildfer.models.ensemble_net.EnsembleNet` (torch) takes the normalised ``N x 1 x H x W`` batch a :class:`Classifier` feeds
any net, makes the TTA views (``"flip"``: the face and its mirror; ``"tencrop"``: four corners
and the centre at ``crop`` of 48 pixels, resized back, each mirrored: exactly the views of
``wildfer evaluate --tta``), runs every member on every view, averages the softmax
probabilities (by ``weights``) and returns their logarithm: ``softmax(output)`` is the
ensemble's probability, so the rest of wildfer needs no special case.

:class:`GraphEnsemble` computes the same with numpy when every member runs on an ONNX graph
(the ``onnx`` and ``int8`` backends, mixed or not), so an ensemble of built-ins needs no torch.

Members may differ in input normalisation and size and in classes (matched by name to the
ensemble's and folded with :func:`wildfer.models.classifier.fold_classes`: a FER+ member's
contempt is folded away).

Spec files (``.json``) name the members and the averaging:
``{"arch": "ensemble", "members": ["default", "runs/b/best.pt"], "weights": [1, 1], "tta": "tencrop"}``
(paths relative to the file); the built-in ``accurate`` is one (``weights/accurate.json``).
``"backends": ["int8", "onnx"]`` (optional, one per member) says what ``backend="auto"`` runs
each member on: float and int8 graphs may mix (the ensemble's backend is then ``"mixed"``).
"""

from __future__ import annotations

import contextvars
import json
import os
from pathlib import Path
from typing import Callable, Collection, Sequence

import numpy as np

from ..errors import ModelError
from ..labels import class_alignment
from .classifier import (
    BACKENDS,
    CALIBRATION_KEYS,
    DEFAULT_PREPROCESS,
    GRAPH_BACKENDS,
    MIXED,
    Classifier,
    checked_class_bias,
    checked_temperature,
    face_view,
    fold_classes,
    mean_std,
    mirror,
    pixel_batch,
    resize_planes,
    softmax,
    ensemble_weights,  # noqa: F401 - re-exported for callers
    tta_mode,
    tta_views,
)

ENSEMBLE_ARCH = "ensemble"

#: the torch form's names, found here too (:mod:`wildfer.models.ensemble_net`)
_TORCH_NAMES = ("EnsembleNet", "RunnerNet", "class_map", "ensemble_net")


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from . import ensemble_net

        return getattr(ensemble_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GraphEnsemble:
    """An ensemble's log-probabilities from members that compute on ONNX graphs, with numpy:
    what :class:`~wildfer.models.ensemble_net.EnsembleNet` computes, without torch. It takes the
    faces themselves (0-255, one array or one per view the ensemble's members cut), makes the
    TTA views in pixels and lets each member normalise and resize its own (both linear, so the
    order does not matter)."""

    #: :meth:`Classifier.graph_logits` hands it the faces, not a normalised batch
    reads_faces = True

    def __init__(self, members: Sequence[Classifier], weights: np.ndarray, *, tta: str | None, crop: int, size: int,
                 member_inputs: Sequence[Sequence[int]], class_maps: Sequence[np.ndarray | None]):
        self.members, self.weights = list(members), np.asarray(weights, np.float64)
        self.tta, self.crop, self.size = tta_mode(tta, "ensemble tta"), int(crop), int(size)
        if not 0 < self.crop <= self.size:
            raise ModelError(f"ensemble crop must be 1..{self.size}, not {crop}")
        self.member_inputs = [list(ix) for ix in member_inputs]
        self.class_maps = list(class_maps)
        self.views = max(j for ix in self.member_inputs for j in ix) + 1

    def logits(self, faces, batch_size: int = 256) -> np.ndarray:
        """Log of the weighted mean, over members and TTA views, of the members' probabilities
        of ``faces`` (one array, which every member reads, or a list with one per view)."""
        single = not isinstance(faces, (list, tuple))
        arrays = [pixel_batch(f) for f in ([faces] if single else faces)]
        if not single and len(arrays) != self.views:
            raise ModelError(f"{len(arrays)} face arrays for an ensemble that reads {self.views} views of each face")
        n = len(arrays[0])
        outs = [self._log_mean([a[i:i + batch_size] for a in arrays], single, batch_size) for i in range(0, n, batch_size)]
        classes = self.class_maps[0].shape[0] if self.class_maps[0] is not None else len(self.members[0].classes)
        return np.concatenate(outs) if outs else np.zeros((0, classes), np.float32)

    def _log_mean(self, arrays: list[np.ndarray], single: bool, batch_size: int) -> np.ndarray:
        if single:  # every member reads the one view, scaled to the ensemble's size first
            x = resize_planes(arrays[0], self.size)
            per_input = [tta_views(x, self.tta, self.crop, flip=mirror,
                                   resize=None if self.crop == self.size else lambda v: resize_planes(v, self.size))]
            inputs = [[0]] * len(self.members)
        else:  # the crops of each view scale with its side
            per_input = []
            for x in arrays:
                side = x.shape[-1]
                crop = max(1, round(self.crop * side / self.size))
                per_input.append(tta_views(x, self.tta, crop, flip=mirror,
                                           resize=None if crop == side else lambda v, s=side: resize_planes(v, s)))
            inputs = self.member_inputs
        augmented = list(zip(*per_input))
        total = None
        for i, member in enumerate(self.members):
            ix = inputs[i]
            acc = None
            for views in augmented:
                faces = views[ix[0]] if len(ix) == 1 else [views[j] for j in ix]
                p = fold_classes(softmax(member.graph_logits(faces, batch_size)), self.class_maps[i])
                acc = p if acc is None else acc + p
            part = self.weights[i] * acc / len(augmented)
            total = part if total is None else total + part
        return np.log(np.clip(total, 1e-12, None)).astype(np.float32)


def ensemble_classifier(members: Sequence, *, weights: Sequence[float] | None = None, tta: str | None = None,
                        crop: int = 44, name: str = "", classes: Sequence[str] | None = None,
                        meta: dict | None = None, temperature: float | None = None,
                        class_bias: Sequence[float] | None = None,
                        load: Callable[[str], Classifier] | None = None) -> Classifier:
    """One :class:`~wildfer.models.classifier.Classifier` from several: their probabilities
    averaged over ``tta`` views. Members are classifiers, or names and paths that ``load``
    turns into classifiers (:func:`wildfer.models.loader.ensemble_classifier` passes
    ``load_model``). ``classes``: the output classes (default: the first member's own).
    ``temperature``: the averaged log-probabilities are divided by it, and ``class_bias`` (one
    number per output class) added to them (calibration, fitted on held-out faces:
    :func:`wildfer.evaluate.calibration.fit_temperature_bias`)."""
    if isinstance(members, (str, os.PathLike)):
        members = [members]
    tta = tta_mode(tta, "ensemble tta")
    named = [m for m in members if not isinstance(m, Classifier)]
    if named and load is None:
        raise ModelError(f"ensemble member {named[0]!s}: a name or path needs a loader; use "
                         "wildfer.models.loader.ensemble_classifier, or pass classifiers")
    clfs = [m if isinstance(m, Classifier) else load(m) for m in members]
    if not clfs:
        raise ModelError("an ensemble needs at least one member")
    classes = tuple(classes or clfs[0].classes)
    pre = dict(clfs[0].preprocess or DEFAULT_PREPROCESS)
    for key in CALIBRATION_KEYS:  # a member's calibration is its own
        pre.pop(key, None)
    pre["grayscale"] = all(c.channels == 1 for c in clfs)  # colour faces when any member reads them
    size = int(pre.get("size", DEFAULT_PREPROCESS["size"]))
    # the distinct ways the members cut faces: with more than one, each face comes as one crop per view
    views: list[dict] = []
    member_inputs = []
    for c in clfs:
        ix = []
        for v in c.face_views:
            keys = [face_view(u) for u in views]
            if face_view(v) not in keys:
                views.append({k: val for k, val in v.items() if k not in ("views", *CALIBRATION_KEYS)})
                keys.append(face_view(v))
            ix.append(keys.index(face_view(v)))
        member_inputs.append(ix)
    if len(views) > 1:
        pre["views"] = views
    if temperature is not None:
        pre["temperature"] = checked_temperature(temperature, "ensemble temperature")
    if class_bias is not None:
        pre["class_bias"] = checked_class_bias(class_bias, len(classes), "ensemble class_bias")
    w = ensemble_weights(weights, len(clfs))

    def build():
        from .ensemble_net import ensemble_net

        return ensemble_net(clfs, weights=w, tta=tta, crop=int(crop), size=size, input_norm=mean_std(pre),
                            member_inputs=member_inputs, classes=classes)

    kwargs = {"members": [c.name or c.arch for c in clfs], "weights": [round(float(x), 6) for x in w], "tta": tta,
              "crop": int(crop)}
    # where the members compute (the first one's device: an ensemble's network joins its members')
    common = dict(name=name or "ensemble(" + ",".join(kwargs["members"]) + ")", arch=ENSEMBLE_ARCH,
                  model_kwargs=kwargs, meta=dict(meta or {}, **kwargs), device=clfs[0].device)
    # members that all compute on onnxruntime graphs: the ensemble does too, with numpy; its
    # backend is theirs, or MIXED when float and int8 graphs sit side by side
    backends = {c.backend for c in clfs}
    if backends <= set(GRAPH_BACKENDS) and all(c.runner is not None for c in clfs):
        maps = [class_alignment(c.classes, classes) for c in clfs]
        runner = GraphEnsemble(clfs, w, tta=tta, crop=int(crop), size=size, member_inputs=member_inputs,
                               class_maps=[None if m is None else m.astype(np.float32) for m in maps])
        backend = backends.pop() if len(backends) == 1 else MIXED
        if backend == MIXED:
            common["meta"]["member_backends"] = [c.backend for c in clfs]
        return Classifier(None, classes, pre, backend=backend, runner=runner, build=build, **common)
    return Classifier(build(), classes, pre, **common)


def is_ensemble_spec(path: str | os.PathLike) -> bool:
    p = Path(path)
    if p.suffix != ".json" or not p.is_file():
        return False
    try:
        spec = json.loads(p.read_text())
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return False
    return isinstance(spec, dict) and spec.get("arch") == ENSEMBLE_ARCH


def load_spec_members(path: str | os.PathLike) -> list[str]:
    """The member names/paths a spec file lists, as written (empty when unreadable)."""
    try:
        members = json.loads(Path(path).read_text()).get("members")
    except (OSError, ValueError, AttributeError, RecursionError):
        return []
    return [m for m in members if isinstance(m, str)] if isinstance(members, list) else []


def spec_backends(spec: dict, path: str | os.PathLike = "ensemble spec") -> list[str] | None:
    """A spec's ``"backends"``: one backend per member (``"onnx"``, ``"int8"`` or ``"torch"``),
    what ``backend="auto"`` runs each member on, so float and int8 graphs can sit side by side;
    ``None`` when the spec names none. A list of the wrong length or with an unknown backend is
    a :class:`ModelError` naming the file."""
    backends = spec.get("backends")
    if backends is None:
        return None
    members = spec.get("members")
    if not isinstance(backends, list) or not all(b in BACKENDS for b in backends) \
            or not isinstance(members, list) or len(backends) != len(members):
        raise ModelError(f"{path}: \"backends\" must list one of {', '.join(BACKENDS)} for each member, "
                         f"not {backends!r}")
    return list(backends)


class SpecCycleError(ModelError):
    """Ensemble specs that list each other in a ring (or a spec that lists itself)."""


#: the spec files being loaded, outermost first, as ``(resolved path, path as named)``: a spec
#: met again while its own members are loading is a cycle (per thread and task of the service)
_LOADING: contextvars.ContextVar[tuple[tuple[Path, str], ...]] = contextvars.ContextVar("wildfer_specs_loading",
                                                                                         default=())


def load_ensemble_spec(path: str | os.PathLike, name: str = "", *,
                       load: Callable[[str, str | None], Classifier], builtins: Collection[str] = ()) -> Classifier:
    """The classifier a spec file describes, its members read by ``load(member, backend)``
    (member paths relative to the file; names in ``builtins`` as they are; ``backend``: the
    member's entry in the spec's ``"backends"``, what ``backend="auto"`` runs it on, or ``None``
    when the spec names none)."""
    path = Path(path)
    stack = _LOADING.get()
    key = path.resolve()
    if any(k == key for k, _ in stack):
        start = next(i for i, (k, _) in enumerate(stack) if k == key)
        ring = " -> ".join([shown for _, shown in stack[start:]] + [str(path)])
        raise SpecCycleError(f"{stack[start][1]}: ensemble specs form a cycle: {ring}")
    token = _LOADING.set(stack + ((key, str(path)),))
    try:
        return _load_spec(path, name, load, set(builtins))
    finally:
        _LOADING.reset(token)


def _load_spec(path: Path, name: str, load: Callable[[str, str | None], Classifier], builtins: set[str]) -> Classifier:
    try:
        spec = json.loads(path.read_text())
    except RecursionError:
        raise ModelError(f"{path}: not a readable ensemble spec (JSON nested too deep)") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable ensemble spec ({e})") from None
    if not isinstance(spec, dict) or spec.get("arch") != ENSEMBLE_ARCH:
        raise ModelError(f"{path}: not an ensemble spec (needs \"arch\": \"ensemble\")")
    members = spec.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise ModelError(f"{path}: \"members\" must be a non-empty list of model names or paths")
    crop, classes = spec.get("crop", 44), spec.get("classes")
    if not isinstance(crop, int) or isinstance(crop, bool):
        raise ModelError(f"{path}: \"crop\" must be a whole number of pixels, not {crop!r}")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise ModelError(f"{path}: \"classes\" must be a list of class names, not {classes!r}")
    backends = spec_backends(spec, path)
    resolved = [m if (m in builtins or os.path.isabs(m)) else str(path.parent / m) for m in members]
    try:
        clfs = [load(m, b) for m, b in zip(resolved, backends or [None] * len(resolved))]
        return ensemble_classifier(clfs, weights=spec.get("weights"), tta=spec.get("tta"),
                                   crop=crop, name=name or str(path), classes=classes,
                                   temperature=spec.get("temperature"), class_bias=spec.get("class_bias"),
                                   meta={k: v for k, v in spec.items()
                                         if k not in ("members", "weights", "tta", "crop", "backends", *CALIBRATION_KEYS)})
    except SpecCycleError:
        raise  # names its files already
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
