"""Ensembles with test-time augmentation as one network, so that every stage (evaluate, the wild
pipeline, the service, ONNX export, gradient saliency) can use them like a single model.

:class:`EnsembleNet` takes the normalised ``N x 1 x H x W`` batch a :class:`Classifier` feeds
any net, makes the TTA views (``"flip"``: the face and its mirror; ``"tencrop"``: four corners
and the centre at ``crop`` of 48 pixels, resized back, each mirrored: exactly the views of
``wildfer evaluate --tta``), runs every member on every view, averages the softmax
probabilities (by ``weights``) and returns their logarithm: ``softmax(output)`` is the
ensemble's probability, so the rest of wildfer needs no special case.

Members may differ in input normalisation and size and in classes (matched by name to the
ensemble's and folded with :func:`wildfer.models.classifier.fold_classes`: a FER+ member's
contempt is folded away).

Spec files (``.json``) name the members and the averaging:
``{"arch": "ensemble", "members": ["default", "runs/b/best.pt"], "weights": [1, 1], "tta": "tencrop"}``
(paths relative to the file); the built-in ``accurate`` is one (``weights/accurate.json``).
"""

from __future__ import annotations

import contextvars
import json
import os
from pathlib import Path
from typing import Callable, Collection, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ModelError
from ..labels import class_alignment
from .classifier import (
    DEFAULT_PREPROCESS,
    Classifier,
    face_view,
    fold_classes,
    match_channels,
    mean_std,
    mirror_index,
    tta_mode,
    tta_views,
)

ENSEMBLE_ARCH = "ensemble"


def ensemble_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """``weights`` for ``n`` ensemble members, normalised to sum 1 (equal when ``None``)."""
    if weights is None:
        return np.full(n, 1.0 / n)
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (Sequence, np.ndarray)) or not all(
            isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in weights):
        raise ModelError(f"ensemble weights must be a list of {n} numbers >= 0 with a positive sum, not {weights!r}")
    w = np.asarray([float(x) for x in weights], dtype=np.float64)
    if len(w) != n:
        raise ModelError(f"{len(w)} ensemble weight(s) for {n} model(s): the weights must be {n} numbers >= 0 "
                         f"with a positive sum, one per model")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ModelError(f"ensemble weights must be {n} numbers >= 0 with a positive sum, not {list(weights)}")
    return w / w.sum()


class EnsembleNet(nn.Module):
    """Weighted average of member probabilities over TTA views; outputs log-probabilities."""

    #: Grad-CAM reads one conv layer in one forward pass; an ensemble runs several nets several times
    cam_unsupported = ("Grad-CAM needs one conv layer seen once per face; an ensemble runs several nets on several "
                       "views: use vanilla, smoothgrad, ig or occlusion, or explain one member")

    def __init__(self, members: Sequence[nn.Module], *, weights: Sequence[float] | None = None,
                 tta: str | None = None, crop: int = 44, size: int = DEFAULT_PREPROCESS["size"],
                 input_norm: tuple[float, float] = (DEFAULT_PREPROCESS["mean"], DEFAULT_PREPROCESS["std"]),
                 member_norms: Sequence[tuple[float, float]] | None = None, member_sizes: Sequence[int] | None = None,
                 class_maps: Sequence[torch.Tensor | None] | None = None,
                 member_channels: Sequence[int] | None = None,
                 member_inputs: Sequence[Sequence[int]] | None = None):
        super().__init__()
        if not members:
            raise ModelError("an ensemble needs at least one member")
        tta = tta_mode(tta, "ensemble tta")
        n = len(members)
        w = ensemble_weights(weights, n)
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.from_numpy(w).float(), persistent=False)
        self.tta, self.crop, self.size = tta, int(crop), int(size)
        if not 0 < self.crop <= self.size:
            raise ModelError(f"ensemble crop must be 1..{self.size}, not {crop}")
        self.input_norm = (float(input_norm[0]), float(input_norm[1]))
        self.member_norms = [tuple(map(float, m)) for m in (member_norms or [self.input_norm] * n)]
        self.member_sizes = [int(s) for s in (member_sizes or [self.size] * n)]
        self.member_channels = [int(c) for c in (member_channels or [1] * n)]  # grey 1, colour 3
        # which of the input views (crops cut in different ways) each member reads, when the
        # forward pass gets a list of views; one index, or several for a member that is itself
        # an ensemble of several views
        self.member_inputs = [[int(j) for j in ix] for ix in (member_inputs or [[0]] * n)]
        maps = list(class_maps or [None] * n)
        for i, m in enumerate(maps):  # buffers so .to(device) moves them; None = same classes
            self.register_buffer(f"class_map_{i}", None if m is None else torch.as_tensor(m, dtype=torch.float32),
                                 persistent=False)
        self.register_buffer("flip_index", torch.from_numpy(mirror_index(self.size)), persistent=False)
        self.in_chans = int(getattr(members[0], "in_chans", 1))
        first = next(self.members.parameters(), None)
        if first is not None:  # members already on a GPU: the buffers made above join them
            self.to(first.device)

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The TTA views (:func:`~wildfer.models.classifier.tta_views`) of a ``size`` x ``size``
        batch, crops resized back to ``size`` (any pixel scale; bilinear resizing is linear, so it
        commutes with the normalisation)."""
        resize = None if self.crop == self.size else (
            lambda v: F.interpolate(v, size=(self.size, self.size), mode="bilinear", align_corners=False))
        return tta_views(x, self.tta, self.crop, flip=lambda a: a.index_select(-1, self.flip_index), resize=resize)

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Log-probabilities of a normalised batch, or of a list of batches: the same faces cut
        in several ways (the views each member reads, :attr:`member_inputs`)."""
        if isinstance(x, (list, tuple)):
            return self._forward_views(list(x))
        mean_in, std_in = self.input_norm
        x01 = x * std_in + mean_in
        if x01.shape[-1] != self.size or x01.shape[-2] != self.size:
            x01 = F.interpolate(x01, size=(self.size, self.size), mode="bilinear", align_corners=False)
        # one input view for every member (however the members cut faces themselves)
        return self._average([[v] for v in self.views(x01)], [[0]] * len(self.members))

    def _member_probabilities(self, i: int, net: nn.Module, v: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Member ``i``'s probabilities (on the ensemble's classes) of a 0-1 view, or of a list of
        0-1 views for a member that reads several."""
        mean, std, size = *self.member_norms[i], self.member_sizes[i]
        if isinstance(v, list):  # an ensemble member of several views: its own input scaling
            out = net([(t - mean) / std for t in v])
        else:
            if v.shape[-1] != size or v.shape[-2] != size:
                v = F.interpolate(v, size=(size, size), mode="bilinear", align_corners=False)
            out = net((match_channels(v, self.member_channels[i]) - mean) / std)
        return fold_classes(torch.softmax(out.float(), dim=1), getattr(self, f"class_map_{i}"))

    def _forward_views(self, xs: list[torch.Tensor]) -> torch.Tensor:
        mean_in, std_in = self.input_norm
        # the TTA views of every input view, as [tta view][input view]; crops scale with each side
        per_input = []
        for x in xs:
            side = x.shape[-1]
            crop = max(1, round(self.crop * side / self.size))
            resize = None if crop == side else (
                lambda v, s=side: F.interpolate(v, size=(s, s), mode="bilinear", align_corners=False))
            per_input.append(tta_views(x * std_in + mean_in, self.tta, crop, flip=lambda a: a.flip(-1), resize=resize))
        return self._average(list(zip(*per_input)), self.member_inputs)

    def _average(self, augmented: Sequence[Sequence[torch.Tensor]], inputs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Log of the weighted mean, over members and TTA views, of the members' probabilities.
        ``augmented[k][j]``: TTA view ``k`` of input view ``j``; member ``i`` reads the input views
        ``inputs[i]`` (one tensor, or a list when it reads several)."""
        total = None
        for i, net in enumerate(self.members):
            ix = inputs[i]
            acc = None
            for views in augmented:
                p = self._member_probabilities(i, net, views[ix[0]] if len(ix) == 1 else [views[j] for j in ix])
                acc = p if acc is None else acc + p
            part = self.weights[i] * acc / len(augmented)
            total = part if total is None else total + part
        return torch.log(total.clamp_min(1e-12))


class RunnerNet(nn.Module):
    """A member that computes on onnxruntime (its int8 or ONNX graph) inside an ensemble, on the
    CPU. Where gradients are asked for (saliency maps: an input that requires grad) its torch
    network ``net`` computes instead, as a single classifier's does on those backends."""

    def __init__(self, runner, net: nn.Module, in_chans: int):
        super().__init__()
        self.runner, self.net, self.in_chans = runner, net, in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return self.net(x)
        return torch.from_numpy(self.runner(x.detach().cpu().float().numpy())).to(x.device)


def class_map(member_classes: Sequence[str], classes: Sequence[str]) -> torch.Tensor | None:
    """``C x C_member`` 0/1 matrix by class name (:func:`wildfer.labels.class_alignment`); ``None`` when they agree."""
    m = class_alignment(member_classes, classes)
    return None if m is None else torch.from_numpy(m).float()


def ensemble_classifier(members: Sequence, *, weights: Sequence[float] | None = None, tta: str | None = None,
                        crop: int = 44, name: str = "", classes: Sequence[str] | None = None,
                        meta: dict | None = None, temperature: float | None = None,
                        load: Callable[[str], Classifier] | None = None) -> Classifier:
    """One :class:`~wildfer.models.classifier.Classifier` from several: their probabilities
    averaged over ``tta`` views. Members are classifiers, or names and paths that ``load``
    turns into classifiers (:func:`wildfer.models.loader.ensemble_classifier` passes
    ``load_model``). ``classes``: the output classes (default: the first member's own).
    ``temperature``: the averaged log-probabilities are divided by it (calibration, fitted on
    held-out faces)."""
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
    # members that compute on onnxruntime run their graphs; the ensemble's backend says which
    runners = {c.backend for c in clfs if c.backend != "torch" and c.runner is not None}
    nets = [c.net if c.backend == "torch" or c.runner is None else RunnerNet(c.runner, c.net, c.channels) for c in clfs]
    classes = tuple(classes or clfs[0].classes)
    pre = dict(clfs[0].preprocess or DEFAULT_PREPROCESS)
    pre.pop("temperature", None)  # a member's calibration is its own
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
                views.append({k: val for k, val in v.items() if k not in ("views", "temperature")})
                keys.append(face_view(v))
            ix.append(keys.index(face_view(v)))
        member_inputs.append(ix)
    if len(views) > 1:
        pre["views"] = views
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0.05 <= temperature <= 20:
            raise ModelError(f"ensemble temperature must be a number in [0.05, 20], not {temperature!r}")
        pre["temperature"] = float(temperature)
    net = EnsembleNet(
        nets, weights=weights, tta=tta, crop=crop, size=size, input_norm=mean_std(pre),
        member_norms=[mean_std(c.preprocess) for c in clfs],
        member_sizes=[c.size for c in clfs], member_channels=[c.channels for c in clfs],
        member_inputs=member_inputs, class_maps=[class_map(c.classes, classes) for c in clfs],
    ).eval()
    w = net.weights.tolist()
    kwargs = {"members": [c.name or c.arch for c in clfs], "weights": [round(x, 6) for x in w], "tta": tta,
              "crop": int(crop)}
    return Classifier(net, classes, pre, name=name or "ensemble(" + ",".join(kwargs["members"]) + ")",
                      arch=ENSEMBLE_ARCH, model_kwargs=kwargs, meta=dict(meta or {}, **kwargs),
                      backend=runners.pop() if len(runners) == 1 and len(nets) == sum(
                          isinstance(n, RunnerNet) for n in nets) else "torch")


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


class SpecCycleError(ModelError):
    """Ensemble specs that list each other in a ring (or a spec that lists itself)."""


#: the spec files being loaded, outermost first, as ``(resolved path, path as named)``: a spec
#: met again while its own members are loading is a cycle (per thread and task of the service)
_LOADING: contextvars.ContextVar[tuple[tuple[Path, str], ...]] = contextvars.ContextVar("wildfer_specs_loading",
                                                                                         default=())


def load_ensemble_spec(path: str | os.PathLike, name: str = "", *, load: Callable[[str], Classifier],
                       builtins: Collection[str] = ()) -> Classifier:
    """The classifier a spec file describes, its members read by ``load`` (member paths relative
    to the file; names in ``builtins`` as they are)."""
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


def _load_spec(path: Path, name: str, load: Callable[[str], Classifier], builtins: set[str]) -> Classifier:
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
    resolved = [m if (m in builtins or os.path.isabs(m)) else str(path.parent / m) for m in members]
    try:
        return ensemble_classifier(resolved, weights=spec.get("weights"), tta=spec.get("tta"),
                                   crop=crop, name=name or str(path), classes=classes,
                                   temperature=spec.get("temperature"), load=load,
                                   meta={k: v for k, v in spec.items()
                                         if k not in ("members", "weights", "tta", "crop", "temperature")})
    except SpecCycleError:
        raise  # names its files already
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
