"""The torch form of an ensemble (:mod:`wildfer.models.ensemble`): one ``nn.Module`` whose
output is the ensemble's log-probabilities, for gradients (saliency maps), the ``torch``
backend and ONNX export. An ensemble loaded on graphs computes with
:class:`wildfer.models.ensemble.GraphEnsemble` and builds this only when asked for its network.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ModelError
from ..labels import class_alignment
from .classifier import (DEFAULT_PREPROCESS, Classifier, denormalize_input, ensemble_weights, fold_classes,
                         match_channels, mean_std, mirror_index, normalize_input, tta_mode, tta_views)


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
        x01 = denormalize_input(x, self.input_norm)
        if x01.shape[-1] != self.size or x01.shape[-2] != self.size:
            x01 = F.interpolate(x01, size=(self.size, self.size), mode="bilinear", align_corners=False)
        # one input view for every member (however the members cut faces themselves)
        return self._average([[v] for v in self.views(x01)], [[0]] * len(self.members))

    def _member_probabilities(self, i: int, net: nn.Module, v: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Member ``i``'s probabilities (on the ensemble's classes) of a 0-1 view, or of a list of
        0-1 views for a member that reads several."""
        norm, size = self.member_norms[i], self.member_sizes[i]
        if isinstance(v, list):  # an ensemble member of several views: its own input scaling
            out = net([normalize_input(t, norm) for t in v])
        else:
            if v.shape[-1] != size or v.shape[-2] != size:
                v = F.interpolate(v, size=(size, size), mode="bilinear", align_corners=False)
            out = net(normalize_input(match_channels(v, self.member_channels[i]), norm))
        return fold_classes(torch.softmax(out.float(), dim=1), getattr(self, f"class_map_{i}"))

    def _forward_views(self, xs: list[torch.Tensor]) -> torch.Tensor:
        # the TTA views of every input view, as [tta view][input view]; crops scale with each side
        per_input = []
        for x in xs:
            side = x.shape[-1]
            crop = max(1, round(self.crop * side / self.size))
            resize = None if crop == side else (
                lambda v, s=side: F.interpolate(v, size=(s, s), mode="bilinear", align_corners=False))
            x01 = denormalize_input(x, self.input_norm)
            per_input.append(tta_views(x01, self.tta, crop, flip=lambda a: a.flip(-1), resize=resize))
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
    CPU. Where gradients are asked for (saliency maps: an input that requires grad) or the
    ensemble is traced (ONNX export: a graph's answer would be traced as a constant) its torch
    network ``net`` computes instead, as a single classifier's does on those backends."""

    def __init__(self, runner, net: nn.Module, in_chans: int):
        super().__init__()
        self.runner, self.net, self.in_chans = runner, net, in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or (torch.is_grad_enabled() and x.requires_grad):
            return self.net(x)
        return torch.from_numpy(self.runner(x.detach().cpu().float().numpy())).to(x.device)


def class_map(member_classes: Sequence[str], classes: Sequence[str]) -> torch.Tensor | None:
    """``C x C_member`` 0/1 matrix by class name (:func:`wildfer.labels.class_alignment`); ``None`` when they agree."""
    m = class_alignment(member_classes, classes)
    return None if m is None else torch.from_numpy(m).float()


def ensemble_net(clfs: Sequence[Classifier], *, weights, tta, crop: int, size: int, input_norm, member_inputs,
                 classes: Sequence[str]) -> EnsembleNet:
    """The :class:`EnsembleNet` of member classifiers: members computing on a graph run it
    inside (:class:`RunnerNet`), keeping their torch network for gradients."""
    nets = [c.net if c.backend == "torch" or c.runner is None else RunnerNet(c.runner, c.net, c.channels) for c in clfs]
    return EnsembleNet(
        nets, weights=weights, tta=tta, crop=crop, size=size, input_norm=input_norm,
        member_norms=[mean_std(c.preprocess) for c in clfs],
        member_sizes=[c.size for c in clfs], member_channels=[c.channels for c in clfs],
        member_inputs=member_inputs, class_maps=[class_map(c.classes, classes) for c in clfs],
    ).eval()
