"""Saliency (attribution) methods behind one captum-like API.

>>> from wildfer.explain import get_method
>>> maps = get_method("gradcam")(clf).attribute(faces)             # doctest: +SKIP
>>> maps.shape                                                      # doctest: +SKIP
torch.Size([8, 1, 48, 48])

Every method is ``Method(model, **params).attribute(x, target=None) -> Tensor``:

* ``model`` is an ``nn.Module`` or a :class:`wildfer.models.loader.Classifier` (its ``.net``
  is explained; a Classifier also accepts uint8 faces ``N x H x W`` and preprocesses them);
* ``x`` is a batch ``N x C x H x W`` in the network's input space (already normalised);
* ``target`` is ``None`` (the predicted class), an int (the same class for every sample) or
  a sequence / tensor of ``N`` ints;
* the result has ``x``'s batch and spatial shape: ``N x C x H x W`` for signed per-channel
  methods (Integrated Gradients) and ``N x 1 x H x W`` for methods that reduce channels
  (vanilla gradient and SmoothGrad take the max of ``|grad|`` over channels as in Simonyan et
  al. 2014 and the study; Grad-CAM and occlusion have no channel axis). For wildfer's
  grayscale 48x48 nets ``C`` is 1, so every map is shaped exactly like the input.

All methods use torch autograd and module hooks; they put the network in ``eval()`` while
they run, restore each module's train/eval flag afterwards and remove every hook they add,
and never touch parameter ``.grad`` (gradients come from ``torch.autograd.grad``).

A call keeps what it computes (targets, hooked activations, noise, convergence deltas) in
call-local state and returns it (:meth:`Attribution.explain`), so one method object serves
concurrent calls from several threads.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import (  # noqa: F401 - the helpers re-exported for callers
    Attribution,
    Attributions,
    BaselineLike,
    CallState,
    MethodError,
    TargetLike,
    as_module,
    black_value,
    conv_layers,
    default_cam_layer,
    eval_mode,
    find_layer,
    gaussian_blur,
    grad_enabled,
    make_baseline,
    prepare_input,
    resolve_target,
)


# ----------------------------------------------------------------------------- registry

_METHODS: dict[str, type[Attribution]] = {}
_ALIASES: dict[str, str] = {}


def register_method(name: str, *aliases: str) -> Callable[[type[Attribution]], type[Attribution]]:
    """Class decorator: make a method available as ``get_method(name)`` (and its aliases)."""

    def deco(cls: type[Attribution]) -> type[Attribution]:
        if name in _METHODS:
            raise ValueError(f"saliency method {name!r} registered twice")
        cls.name = name
        _METHODS[name] = cls
        for a in aliases:
            _ALIASES[a] = name
        return cls

    return deco


def list_methods() -> list[str]:
    """Registered method names (``vanilla``, ``smoothgrad``, ``ig``, ``gradcam`` ...)."""
    return list(_METHODS)


def canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        raise MethodError(f"unknown saliency method {name!r}; known: {', '.join(list_methods())}")
    return key


def get_method(name: str) -> type[Attribution]:
    """The method class registered as ``name`` (or an alias such as ``integrated_gradients``)."""
    return _METHODS[canonical_name(name)]


def create_method(name: str, model: Any, **params: Any) -> Attribution:
    """``get_method(name)(model, **params)`` with a clear error for a wrong parameter."""
    cls = get_method(name)
    try:
        return cls(model, **params)
    except TypeError as e:
        raise MethodError(f"{cls.__name__}: {e}") from None


# ----------------------------------------------------------------------------- gradients


@register_method("vanilla", "gradient", "saliency", "grad")
class VanillaGradient(Attribution):
    """Vanilla gradient saliency (Simonyan et al. 2014), the study's method.

    ``|d score / d x|`` with the max over channels (``abs=True``, default), or the raw signed
    gradient ``N x C x H x W`` with ``abs=False``.
    """

    def __init__(self, model: Any, *, abs: bool = True, **kw: Any):  # noqa: A002 - captum's name
        super().__init__(model, **kw)
        self.abs = bool(abs)
        self.signed = not self.abs

    def _out_shape(self, x):
        return x.shape if not self.abs else super()._out_shape(x)

    def _attribute(self, x, target):
        g = self._input_grad(x, target)
        if not self.abs:
            return g
        return g.abs().amax(dim=1, keepdim=True)


@register_method("smoothgrad", "smooth_grad", "sg")
class SmoothGrad(Attribution):
    """SmoothGrad (Smilkov et al. 2017): the mean of ``|gradient|`` over ``n_samples`` noisy
    copies of the input, noise ``N(0, (noise * (max(x) - min(x)))^2)`` per image.

    ``noise=0`` gives the vanilla gradient exactly. ``seed`` makes maps reproducible.
    """

    def __init__(self, model: Any, *, n_samples: int = 25, noise: float = 0.15, abs: bool = True,  # noqa: A002
                 seed: int | None = 0, internal_batch_size: int = 256, **kw: Any):
        super().__init__(model, **kw)
        if n_samples < 1:
            raise MethodError("n_samples must be >= 1")
        if noise < 0:
            raise MethodError("noise must be >= 0")
        self.n_samples = int(n_samples)
        self.noise = float(noise)
        self.abs = bool(abs)
        self.signed = not self.abs
        self.seed = seed
        self.internal_batch_size = int(internal_batch_size)

    def _out_shape(self, x):
        return x.shape if not self.abs else super()._out_shape(x)

    def _new_call(self, target):
        # one generator per call, drawn image by image: maps do not depend on batch sizes
        gen = torch.Generator()
        gen.manual_seed(int(self.seed) if self.seed is not None else int(torch.seed() % (2**63)))
        return CallState(target=target, generator=gen)

    def _attribute_batch(self, x, target, call):
        n, s = x.shape[0], self.n_samples
        eps = torch.stack([torch.randn((s, *x.shape[1:]), generator=call.generator) for _ in range(n)])
        eps = eps.to(x.device, x.dtype).reshape(n * s, *x.shape[1:])
        span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(n, 1, 1, 1)
        noisy = x.repeat_interleave(s, dim=0) + eps * (self.noise * span).repeat_interleave(s, dim=0)
        ts = target.repeat_interleave(s)
        acc = []
        for i in range(0, noisy.shape[0], self.internal_batch_size):
            g = self._input_grad(noisy[i : i + self.internal_batch_size], ts[i : i + self.internal_batch_size])
            acc.append(g.abs() if self.abs else g)
        g = torch.cat(acc).view(n, s, *x.shape[1:]).mean(1)
        return g.amax(dim=1, keepdim=True) if self.abs else g


@register_method("ig", "integrated_gradients", "integratedgradients")
class IntegratedGradients(Attribution):
    """Integrated Gradients (Sundararajan et al. 2017).

    ``(x - b) * integral_0^1 grad f(b + a (x - b)) da``, the integral by Gauss-Legendre
    quadrature (``method="gausslegendre"``, captum's default) or the trapezoid rule
    (``"riemann_trapezoid"``) over ``steps`` points. The baseline ``b`` is ``"zeros"``,
    ``"black"``, ``"blur"``, ``"mean"``, a number or a tensor (see :func:`make_baseline`).

    Completeness: each map sums to ``f(x) - f(b)`` up to the quadrature error
    (``sum(map) - (f(x) - f(b))`` per sample), returned with ``return_convergence_delta=True``
    or by :meth:`explain`, and readable after the call as ``convergence_delta_``. Maps are
    signed, ``N x C x H x W``.
    """

    signed = True

    def __init__(self, model: Any, *, steps: int = 32, baseline: BaselineLike = "zeros", method: str = "gausslegendre",
                 blur_sigma: float = 4.0, internal_batch_size: int = 256, **kw: Any):
        super().__init__(model, **kw)
        if steps < 2:
            raise MethodError("steps must be >= 2")
        if method not in ("gausslegendre", "riemann_trapezoid"):
            raise MethodError(f"method must be gausslegendre or riemann_trapezoid, not {method!r}")
        self.steps = int(steps)
        self.baseline = baseline
        self.method = method
        self.blur_sigma = float(blur_sigma)
        self.internal_batch_size = int(internal_batch_size)
        make_baseline(torch.zeros(1, 1, 4, 4), baseline if not isinstance(baseline, torch.Tensor) else 0.0, model=model)

    def _out_shape(self, x):
        return tuple(x.shape)

    def alphas_and_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Quadrature points in [0, 1] and their weights (summing to 1)."""
        if self.method == "gausslegendre":
            pts, w = np.polynomial.legendre.leggauss(self.steps)
            return torch.tensor(0.5 * (pts + 1.0)), torch.tensor(0.5 * w)
        a = torch.linspace(0.0, 1.0, self.steps, dtype=torch.float64)
        w = torch.full((self.steps,), 1.0 / (self.steps - 1), dtype=torch.float64)
        w[0] *= 0.5
        w[-1] *= 0.5
        return a, w

    def attribute(self, x: Any, target: TargetLike = None, *, return_convergence_delta: bool = False):
        result = self._remember(self.explain(x, target))
        return (result.maps, result.convergence_delta) if return_convergence_delta else result.maps

    __call__ = attribute

    @property
    def convergence_delta_(self) -> torch.Tensor:
        """``sum(map) - (f(x) - f(b))`` per sample of this thread's last :meth:`attribute` call."""
        return self._last_result().convergence_delta

    def _new_call(self, target):
        return CallState(target=target, deltas=[])

    def _attribute_batch(self, x, target, call):
        n = x.shape[0]
        b = make_baseline(x, self.baseline, model=self.model, blur_sigma=self.blur_sigma)
        alphas, weights = self.alphas_and_weights()
        alphas = alphas.to(x.device, x.dtype)
        weights = weights.to(x.device, x.dtype)
        s = len(alphas)
        diff = x - b
        # path points, laid out sample-major: (n * s) x C x H x W
        path = b[:, None] + alphas.view(1, s, 1, 1, 1) * diff[:, None]
        path = path.reshape(n * s, *x.shape[1:])
        ts = target.repeat_interleave(s)
        grads = torch.cat([self._input_grad(path[i : i + self.internal_batch_size], ts[i : i + self.internal_batch_size])
                           for i in range(0, n * s, self.internal_batch_size)])
        avg = (grads.view(n, s, *x.shape[1:]) * weights.view(1, s, 1, 1, 1)).sum(1)
        attr = diff * avg
        fx = self._forward_scores(x, target)
        fb = self._forward_scores(b, target)
        call.deltas.append((attr.flatten(1).sum(1) - (fx - fb)).detach())
        return attr


# ----------------------------------------------------------------------------- CAM family

#: The activation store of the CAM forward pass running in this thread / task. A hook on a
#: shared layer fires for every caller's forward pass; it writes only into its own call's store.
_CAM_STORE: ContextVar[dict | None] = ContextVar("wildfer_cam_store", default=None)


class _CAMBase(Attribution):
    """Template for class activation maps (pytorch-grad-cam style).

    The base class owns the hooks: for each batch a forward hook on ``layer``, registered and
    removed inside the call, keeps its activation ``A`` (``N x K x h x w``) in that call's store
    and hands the rest of the network a copy (so an in-place op after the layer cannot corrupt
    it); ``torch.autograd.grad`` gives ``dS/dA``. A subclass only says
    how to weigh the channels, :meth:`channel_weights` ``-> N x K``; the map is
    ``relu(sum_k w_k A_k)`` upsampled to the input size (``upsample="bilinear"``).

    ``layer`` is ``None`` (the last conv block's output, see :func:`default_cam_layer`), a
    dotted module name such as ``"features.10.0"`` (see :func:`conv_layers`) or the module
    itself.
    """

    def __init__(self, model: Any, *, layer: str | nn.Module | None = None, relu: bool = True,
                 upsample: str = "bilinear", **kw: Any):
        super().__init__(model, **kw)
        reason = getattr(self.net, "cam_unsupported", None)  # e.g. an ensemble: several nets, several views
        if reason:
            raise MethodError(reason)
        self.layer_name, self.layer = find_layer(self.net, layer)
        self.relu = bool(relu)
        if upsample not in ("bilinear", "nearest", "none"):
            raise MethodError("upsample must be bilinear, nearest or none")
        self.upsample = upsample

    def activations_and_grads(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's activation ``A`` and ``d score / d A`` for a batch."""
        store: dict[str, torch.Tensor] = {}

        def hook(_module, _inputs, output):
            if _CAM_STORE.get() is not store:  # another call's forward pass through the layer
                return None
            if not isinstance(output, torch.Tensor):
                raise MethodError(f"layer {self.layer_name!r} does not output a single tensor")
            store["a"] = output
            return output.clone()

        token = _CAM_STORE.set(store)
        handle = self.layer.register_forward_hook(hook)
        try:
            with grad_enabled():
                xi = x.detach().clone().requires_grad_(True)
                score = self._score(self.net(xi), target).sum()
                if "a" not in store:
                    raise MethodError(f"layer {self.layer_name!r} was not used in the forward pass")
                a = store["a"]
                if a.dim() != 4:
                    raise MethodError(f"layer {self.layer_name!r} outputs shape {tuple(a.shape)}, not N x K x h x w")
                (g,) = torch.autograd.grad(score, a, allow_unused=True)
                if g is None:
                    g = torch.zeros_like(a)
        finally:
            handle.remove()
            _CAM_STORE.reset(token)
        return a.detach(), g.detach()

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _attribute(self, x, target):
        a, g = self.activations_and_grads(x, target)
        w = self.channel_weights(a, g)
        cam = (w[:, :, None, None] * a).sum(1, keepdim=True)
        if self.relu:
            cam = F.relu(cam)
        if self.upsample != "none" and cam.shape[-2:] != x.shape[-2:]:
            kw = {"align_corners": False} if self.upsample == "bilinear" else {}
            cam = F.interpolate(cam, size=x.shape[-2:], mode=self.upsample, **kw)
        return cam


@register_method("gradcam", "grad_cam")
class GradCAM(_CAMBase):
    """Grad-CAM (Selvaraju et al. 2017): channel weight = spatial mean of ``dS/dA_k``."""

    def channel_weights(self, activations, grads):
        return grads.mean(dim=(2, 3))


@register_method("gradcam++", "gradcampp", "gradcam_pp", "gradcamplusplus")
class GradCAMPlusPlus(_CAMBase):
    """Grad-CAM++ (Chattopadhay et al. 2018), second/third-order weights as in pytorch-grad-cam."""

    def channel_weights(self, activations, grads):
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_a = activations.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + 1e-7)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (F.relu(grads) * alpha).sum(dim=(2, 3))


# ----------------------------------------------------------------------------- perturbation


def _positions(size: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis; the last window is moved in to cover the border."""
    pos = list(range(0, size - window + 1, stride))
    if pos and pos[-1] + window < size:
        pos.append(size - window)
    return pos or [0]


@register_method("occlusion", "occ")
class Occlusion(Attribution):
    """Occlusion (Zeiler & Fergus 2014): slide a ``window x window`` patch (``stride``) set to
    ``baseline`` over the image; each pixel gets the mean drop of the score over the windows
    that cover it (positive = hiding it lowers the class score). Signed, ``N x 1 x H x W``.
    """

    signed = True

    def __init__(self, model: Any, *, window: int = 8, stride: int = 4, baseline: BaselineLike = "zeros",
                 blur_sigma: float = 4.0, internal_batch_size: int = 256, **kw: Any):
        super().__init__(model, **kw)
        if window < 1 or stride < 1:
            raise MethodError("window and stride must be >= 1")
        self.window = int(window)
        self.stride = int(stride)
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)
        self.internal_batch_size = int(internal_batch_size)

    def _attribute(self, x, target):
        n, c, h, w = x.shape
        win_h, win_w = min(self.window, h), min(self.window, w)
        b = make_baseline(x, self.baseline, model=self.model, blur_sigma=self.blur_sigma)
        boxes = [(i, j) for i in _positions(h, win_h, self.stride) for j in _positions(w, win_w, self.stride)]
        base = self._forward_scores(x, target)
        total = torch.zeros(n, 1, h, w, dtype=x.dtype, device=x.device)
        count = torch.zeros(1, 1, h, w, dtype=x.dtype, device=x.device)
        per_chunk = max(1, self.internal_batch_size // max(1, n))
        for k in range(0, len(boxes), per_chunk):
            chunk = boxes[k : k + per_chunk]
            masks = torch.zeros(len(chunk), 1, h, w, dtype=x.dtype, device=x.device)
            for m, (i, j) in enumerate(chunk):
                masks[m, :, i : i + win_h, j : j + win_w] = 1.0
            # (boxes x n) occluded copies
            xo = x[None] * (1 - masks[:, None]) + b[None] * masks[:, None]
            scores = self._forward_scores(xo.reshape(-1, c, h, w), target.repeat(len(chunk))).view(len(chunk), n)
            drop = base[None] - scores  # boxes x n
            total += (drop[:, :, None, None, None] * masks[:, None]).sum(0)
            count += masks.sum(0, keepdim=True)
        return total / count.clamp_min(1.0)


@register_method("random", "random_map")
class RandomMap(Attribution):
    """Uniform random maps (``seed``): the null baseline for faithfulness and randomization checks.

    The generator is seeded once per object and its stream runs on across calls (torch draws
    from it under its own lock), so successive calls give fresh maps.
    """

    def __init__(self, model: Any, *, seed: int = 0, **kw: Any):
        super().__init__(model, **kw)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def _attribute(self, x, target):
        return torch.rand(x.shape[0], 1, x.shape[2], x.shape[3], generator=self._gen).to(x.device, x.dtype)
