"""What every saliency method (:mod:`wildfer.explain.methods`) builds on: the
:class:`Attribution` base class (it owns the hooks and the call-local state), and the helpers
for inputs, targets, baselines and layers."""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WildferError
from ..models.classifier import mean_std, normalize_input

TargetLike = Union[int, Sequence[int], np.ndarray, torch.Tensor, None]
BaselineLike = Union[str, float, torch.Tensor]


class MethodError(WildferError, ValueError):
    """A saliency method, its parameters, a layer name or a target class is wrong."""


# ----------------------------------------------------------------------------- helpers


def as_module(model: Any) -> nn.Module:
    """The ``nn.Module`` to explain: ``model`` itself or a Classifier's ``.net``."""
    net = getattr(model, "net", model)
    if not isinstance(net, nn.Module):
        raise MethodError(f"cannot explain a {type(model).__name__}: pass an nn.Module or a wildfer Classifier")
    return net


_EVAL_LOCK = threading.Lock()
#: ``id(net) -> [calls inside eval_mode, the flags saved by the first]``
_EVAL_USERS: dict[int, list] = {}


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Put ``net`` in eval mode and restore every submodule's own flag afterwards.

    Overlapping uses of one net (nested, or from several threads) share one switch: the first
    saves the flags, the last restores them, so no call sees the net back in train mode while
    another still runs.
    """
    with _EVAL_LOCK:
        entry = _EVAL_USERS.setdefault(id(net), [0, None])
        if entry[0] == 0:
            entry[1] = [(m, m.training) for m in net.modules()]
            net.eval()
        entry[0] += 1
    try:
        yield net
    finally:
        with _EVAL_LOCK:
            entry[0] -= 1
            if entry[0] == 0:
                del _EVAL_USERS[id(net)]
                for m, flag in entry[1]:
                    m.training = flag


@contextmanager
def grad_enabled() -> Iterator[None]:
    """Autograd on, even when called inside ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


class PackedInputs(nn.Module):
    """A network that reads several inputs, seen by a saliency method as one.

    ``net`` takes a list of batches, ``N x C_k x H_k x W_k`` with ``shapes[k] = (C_k, H_k, W_k)``
    (the same faces cut in several ways, as an ensemble whose members align faces their own
    ways reads them). :meth:`pack` lays each face's inputs, flattened, side by side in one
    ``N x 1 x 1 x L`` tensor; this module's forward pass unpacks it and runs ``net``; a map
    of the packed input splits back into one map per input (:meth:`unpack`).

    Methods that treat each input value on its own mean the same on the packed input: the
    gradient, SmoothGrad (noise per value, its scale from the face's whole range) and
    Integrated Gradients from a constant baseline. Methods that look at neighbouring pixels
    (Grad-CAM, occlusion, a blurred baseline) do not: :data:`PACKED_METHODS`.
    """

    def __init__(self, net: nn.Module, shapes: Sequence[Sequence[int]], preprocess: dict | None = None):
        super().__init__()
        self.inner = net  # not ``net``: as_module reads a model's ``net`` as the module to explain
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        if not self.shapes or any(len(s) != 3 for s in self.shapes):
            raise MethodError(f"packed inputs need one (C, H, W) shape per input, not {shapes!r}")
        self.sizes = [math.prod(s) for s in self.shapes]
        self.preprocess = preprocess  # the input scaling every input shares (black_value reads it)

    def pack(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``xs`` (one batch per input, shaped as ``shapes``) as one ``N x 1 x 1 x L`` batch."""
        if len(xs) != len(self.shapes) or any(tuple(x.shape[1:]) != s for x, s in zip(xs, self.shapes)):
            raise MethodError(f"packed inputs: expected batches shaped {self.shapes}, got "
                              f"{[tuple(x.shape[1:]) for x in xs]}")
        return torch.cat([x.reshape(x.shape[0], -1) for x in xs], dim=1)[:, None, None, :]

    def unpack(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """A packed batch (or a map of one, ``N x 1 x 1 x L``) as one batch per input."""
        flat = packed.reshape(packed.shape[0], -1)
        if flat.shape[1] != sum(self.sizes):
            raise MethodError(f"packed inputs: {flat.shape[1]} values a face, not {sum(self.sizes)}")
        return [part.reshape(-1, *s) for part, s in zip(torch.split(flat, self.sizes, dim=1), self.shapes)]

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.inner(self.unpack(packed))


#: The methods that mean the same on :class:`PackedInputs` (their canonical names), and the
#: baselines Integrated Gradients may start from there.
PACKED_METHODS = ("vanilla", "smoothgrad", "ig")
PACKED_BASELINES = ("zeros", "zero", "black")


def _device(net: nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


def prepare_input(model: Any, x: Any) -> torch.Tensor:
    """``x`` as a float ``N x C x H x W`` tensor on the network's device.

    Float tensors are taken as already normalised network input (``C x H x W`` gets a batch
    axis). Anything else (uint8 faces, numpy arrays, a list of faces) goes through the
    Classifier's own ``to_tensor`` so it is resized and normalised like at prediction time.
    """
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        t = x
        if t.dim() == 3:
            t = t[None]
        if t.dim() != 4:
            raise MethodError(f"input must be N x C x H x W, got shape {tuple(x.shape)}")
    else:
        to_tensor = getattr(model, "to_tensor", None)
        if to_tensor is None:
            raise MethodError(
                "uint8 / numpy faces need a wildfer Classifier (which knows the preprocessing); "
                "with a bare nn.Module pass a normalised float tensor N x C x H x W"
            )
        t = to_tensor(x)
    with torch.inference_mode(False):
        return t.detach().to(_device(as_module(model))).float().clone()


def resolve_target(logits: torch.Tensor, target: TargetLike) -> torch.Tensor:
    """Per-sample class indices (``N`` long): the argmax for ``None``, else ``target`` checked."""
    n, c = logits.shape[0], logits.shape[1]
    if target is None:
        return logits.detach().argmax(1)
    t = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
    t = t.detach().to(torch.long).flatten().to(logits.device)
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise MethodError(f"target has {t.numel()} entries for a batch of {n}")
    if n and (int(t.min()) < 0 or int(t.max()) >= c):
        raise MethodError(f"target class {int(t.max()) if int(t.max()) >= c else int(t.min())} out of range 0-{c - 1}")
    return t


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``N x C x H x W`` (replicate padding), per channel."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, int(math.ceil(3.0 * sigma)))
    k = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    h = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    h = F.conv2d(h, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    v = F.pad(h, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(v, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def black_value(model: Any) -> float:
    """The network-input value of a black pixel (``(0 - mean) / std`` of the preprocessing)."""
    return normalize_input(0.0, mean_std(getattr(model, "preprocess", None)))


def make_baseline(x: torch.Tensor, baseline: BaselineLike, *, model: Any = None, blur_sigma: float = 4.0) -> torch.Tensor:
    """A reference input shaped like ``x``.

    ``"zeros"``: 0 in network-input space (mid-grey for wildfer's normalisation);
    ``"black"``: black pixels; ``"blur"``: ``x`` blurred with a Gaussian (``blur_sigma``);
    ``"mean"``: each image's own mean value per channel; a number: that constant; a tensor:
    broadcast to ``x``.
    """
    if isinstance(baseline, torch.Tensor):
        return baseline.to(x.device, x.dtype).expand_as(x).clone()
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    name = str(baseline).lower()
    if name in ("zeros", "zero"):
        return torch.zeros_like(x)
    if name == "black":
        return torch.full_like(x, black_value(model))
    if name == "blur":
        return gaussian_blur(x, blur_sigma)
    if name == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    raise MethodError(f"unknown baseline {baseline!r}; use zeros, black, blur, mean, a number or a tensor")


#: Modules that act per position and keep the shape: a conv's output is read after them.
_POINTWISE = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU,
              nn.GELU, nn.SiLU, nn.PReLU, nn.Hardswish, nn.Mish, nn.Identity)


def default_cam_layer(net: nn.Module) -> str:
    """The layer Grad-CAM reads by default: the last ``nn.Conv2d``, taken after the
    normalisation and activation that follow it, i.e. the output of the last conv block
    (as pytorch-grad-cam advises: ``features[-1]``-style for VGG, ``layer4[-1]`` for ResNet).

    * conv inside an ``nn.Sequential`` followed by BatchNorm / ReLU ...: the last of those;
    * conv inside a block module (e.g. a ResNet ``BasicBlock``) that is an element of an
      ``nn.Sequential``: that block;
    * otherwise the conv itself.

    Why not the raw conv: in a conv-BN-ReLU net the pre-BN conv output is not what the rest
    of the net sees; on the default model (after 2 epochs) 19% of Grad-CAM maps read there
    were all zero, none at the block output.
    """
    named = dict(net.named_modules())
    convs = [n for n, m in named.items() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise MethodError("the model has no Conv2d layer for a class activation map; pass layer=...")
    conv = convs[-1]
    parent_name, _, child = conv.rpartition(".")
    parent = named[parent_name] if parent_name else net
    if isinstance(parent, nn.Sequential):
        keys = list(parent._modules)
        pick = conv
        for k in keys[keys.index(child) + 1 :]:
            if isinstance(parent._modules[k], _POINTWISE):
                pick = f"{parent_name}.{k}" if parent_name else k
            else:
                break
        return pick
    grand_name, _, _ = parent_name.rpartition(".")
    grand = named[grand_name] if grand_name else (net if parent_name else None)
    if parent_name and isinstance(grand, nn.Sequential):
        return parent_name
    return conv


def find_layer(net: nn.Module, layer: str | nn.Module | None) -> tuple[str, nn.Module]:
    """``(name, module)`` of a layer: ``None`` = :func:`default_cam_layer`, a dotted name, or
    a module."""
    named = dict(net.named_modules())
    if isinstance(layer, nn.Module):
        for name, m in named.items():
            if m is layer:
                return name, m
        raise MethodError("the given layer module is not part of the model")
    convs = [n for n, m in named.items() if isinstance(m, nn.Conv2d)]
    if layer is None:
        name = default_cam_layer(net)
        return name, named[name]
    if layer not in named or layer == "":
        raise MethodError(f"no layer {layer!r} in the model; conv layers: {', '.join(convs) or 'none'}")
    return layer, named[layer]


def conv_layers(net: nn.Module) -> list[str]:
    """Names of every ``nn.Conv2d`` in the model (candidates for Grad-CAM's ``layer``)."""
    return [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]


# ----------------------------------------------------------------------------- base


@dataclass(frozen=True)
class Attributions:
    """What one call computed: the ``maps``, the explained class per sample (``target``) and,
    for Integrated Gradients, ``convergence_delta`` per sample."""

    maps: torch.Tensor
    target: torch.Tensor
    convergence_delta: torch.Tensor | None = None


@dataclass
class CallState:
    """State of one ``attribute`` call, shared by its batches and by nothing else."""

    target: torch.Tensor
    #: SmoothGrad's noise source for this call
    generator: torch.Generator | None = None
    #: Integrated Gradients' completeness error, one tensor per batch (None: not measured)
    deltas: list[torch.Tensor] | None = None

    def result(self, maps: torch.Tensor) -> Attributions:
        delta = None if self.deltas is None else torch.cat(self.deltas) if self.deltas else torch.zeros(0)
        return Attributions(maps=maps, target=self.target, convergence_delta=delta)


class Attribution:
    """Base class: batching, eval mode, target resolution; subclasses give ``_attribute``
    (or ``_attribute_batch`` when a batch needs the call's :class:`CallState`).

    ``output`` picks the score that is explained: ``"logit"`` (default, as in captum and the
    study), ``"prob"`` (softmax probability) or ``"logprob"``.

    :meth:`explain` returns the maps with the explained classes; :meth:`attribute` returns the
    maps and leaves the calling thread's last result readable as ``target_`` (sklearn style).
    """

    name = "base"
    #: True when maps carry a sign (positive = evidence for the class).
    signed = False

    def __init__(self, model: Any, *, output: str = "logit", batch_size: int = 64):
        self.model = model
        self.net = as_module(model)
        if output not in ("logit", "prob", "logprob"):
            raise MethodError(f"output must be logit, prob or logprob, not {output!r}")
        self.output = output
        self.batch_size = int(batch_size)
        self._last = threading.local()

    # -- public API
    def explain(self, x: Any, target: TargetLike = None) -> Attributions:
        """Maps for ``x`` and the class explained for each sample (see the module docstring
        for shapes and targets)."""
        x = prepare_input(self.model, x)
        with torch.inference_mode(False), eval_mode(self.net):
            with torch.no_grad():
                logits = torch.cat([self.net(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]) \
                    if len(x) else torch.zeros(0, 1)
            t = resolve_target(logits, target) if len(x) else torch.zeros(0, dtype=torch.long)
            call = self._new_call(t)
            outs = [self._attribute_batch(x[i : i + self.batch_size], t[i : i + self.batch_size], call)
                    for i in range(0, len(x), self.batch_size)]
        maps = torch.cat(outs).detach() if outs else torch.zeros(0, *self._out_shape(x)[1:])
        return call.result(maps)

    def attribute(self, x: Any, target: TargetLike = None) -> torch.Tensor:
        """Maps for ``x`` (see the module docstring for shapes and targets)."""
        return self._remember(self.explain(x, target)).maps

    __call__ = attribute

    @property
    def target_(self) -> torch.Tensor:
        """The classes explained by this thread's last :meth:`attribute` call."""
        return self._last_result().target

    def _remember(self, result: Attributions) -> Attributions:
        self._last.result = result
        return result

    def _last_result(self) -> Attributions:
        result = getattr(self._last, "result", None)
        if result is None:
            raise AttributeError(f"{type(self).__name__} has not attributed anything in this thread yet")
        return result

    def _out_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.shape[0], 1, x.shape[2], x.shape[3])

    def _new_call(self, target: torch.Tensor) -> CallState:
        return CallState(target=target)

    def _attribute_batch(self, x: torch.Tensor, target: torch.Tensor, call: CallState) -> torch.Tensor:
        return self._attribute(x, target)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    # -- shared pieces
    def _score(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample score of the target class under ``self.output``."""
        if self.output == "prob":
            out = torch.softmax(out, dim=1)
        elif self.output == "logprob":
            out = torch.log_softmax(out, dim=1)
        return out.gather(1, target[:, None])[:, 0]

    def _forward_scores(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._score(self.net(x), target)

    def _input_grad(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """d score / d input for each sample (one batched backward pass)."""
        with grad_enabled():
            xi = x.detach().clone().requires_grad_(True)
            score = self._score(self.net(xi), target).sum()
            (g,) = torch.autograd.grad(score, xi)
        return g.detach()

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("model", "net")
                  and not k.endswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
