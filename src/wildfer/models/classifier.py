"""The :class:`Classifier`: a trained network with its class names and preprocessing, so every
stage (evaluate, explain, wild, serve) feeds faces the same way, and where it computes
(:func:`resolve_device`).

A value object every module may import; it imports none of the loaders, ensembles or ONNX code,
and not torch: a classifier whose backend is an ONNX graph (``onnx`` or ``int8``) reads faces
with numpy and onnxruntime alone, and builds its torch network only when something asks for it
(:attr:`Classifier.net`: saliency maps, training, the ``torch`` backend).
Changing its device (:meth:`Classifier.to`) or backend (:meth:`Classifier.with_backend`)
gives a new classifier and leaves this one as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import ModelError, import_torch, short
from ..labels import FER2013_CLASSES
from .runtime import DEVICES, resolve_device  # noqa: F401 - re-exported for callers

if TYPE_CHECKING:
    import torch

#: FER2013 pixel statistics used to normalise inputs (x / 255 - mean) / std.
DEFAULT_PREPROCESS = {"size": 48, "mean": 0.5, "std": 0.25, "grayscale": True}


def mean_std(preprocess: dict | None) -> tuple[float, float]:
    """``(mean, std)`` of a preprocessing record, :data:`DEFAULT_PREPROCESS`'s where it has none."""
    pre = {**DEFAULT_PREPROCESS, **(preprocess or {})}
    return float(pre["mean"]), float(pre["std"])


def scale_pixels(pixels):
    """0-255 pixels (a float numpy array or torch tensor) in the range 0-1, where every
    network input starts: ``pixels / 255``."""
    return pixels / 255.0


def normalize_input(x01, norm: tuple[float, float]):
    """0-1 pixels (numpy or torch) as network input: ``(x01 - mean) / std``, with ``norm`` the
    ``(mean, std)`` of :func:`mean_std`. The one formula of input normalisation, for inference
    (numpy and torch), training tensors and ensembles alike."""
    mean, std = norm
    return (x01 - mean) / std


def denormalize_input(x, norm: tuple[float, float]):
    """Network input back to 0-1 pixels: the inverse of :func:`normalize_input`."""
    mean, std = norm
    return x * std + mean


def face_view(preprocess: dict | None) -> tuple:
    """What decides how faces are cut for a preprocessing record: ``(size, colour, alignment,
    template)``. Classifiers whose records give the same view read the same crops."""
    pre = {**DEFAULT_PREPROCESS, **(preprocess or {})}
    align = pre.get("align", "fer2013")
    template = pre.get("template") if align == "template" else None
    return (int(pre["size"]), not pre.get("grayscale", True), align,
            None if template is None else tuple(tuple(float(v) for v in p) for p in template))


#: The preprocessing record's calibration: what :meth:`Classifier.predict_proba` applies to the
#: logits (divided by ``temperature``, ``class_bias`` added). An ensemble's is its own, never a member's.
CALIBRATION_KEYS = ("temperature", "class_bias")
#: The temperatures accepted: a smaller one makes every face certain, a larger one every face a tie.
TEMPERATURE_RANGE = (0.05, 20.0)
#: The largest class bias accepted (a larger one would pin a class whatever the face).
MAX_CLASS_BIAS = 5.0


def checked_temperature(value, what: str = "temperature") -> float:
    """``value`` as a float within :data:`TEMPERATURE_RANGE`, else a one-line :class:`ModelError`
    that starts with ``what``."""
    lo, hi = TEMPERATURE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ModelError(f"{what} must be a number in [{lo:g}, {hi:g}], not {short(value)}")
    return float(value)


def checked_class_bias(values, n_classes: int, what: str = "class_bias") -> list[float]:
    """``values`` as ``n_classes`` finite numbers within :data:`MAX_CLASS_BIAS`, else a one-line
    :class:`ModelError` that starts with ``what``."""
    ok = (isinstance(values, (list, tuple)) and len(values) == n_classes
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and abs(v) <= MAX_CLASS_BIAS for v in values))
    if not ok:
        raise ModelError(f"{what} must be {n_classes} numbers (one per class) within "
                         f"+-{MAX_CLASS_BIAS:g}, not {short(values)}")
    return [float(v) for v in values]


#: what computes a classifier's logits: its torch network or an onnxruntime session of it
BACKENDS = ("torch", "onnx", "int8")

#: an ensemble whose members compute on onnxruntime, some on float graphs and some on int8 ones
#: (an ensemble spec's ``"backends"``): not a backend to ask for, the label such an ensemble carries
MIXED = "mixed"

#: the backends whose classifiers compute on onnxruntime with numpy (a ``runner``), no torch
GRAPH_BACKENDS = ("onnx", "int8", MIXED)


def backend_label(backend: str, members: dict[str, str] | None = None) -> str:
    """``backend`` as people read it: a mixed ensemble's with each member's, ``mixed (wild int8,
    wild_mfn onnx)``."""
    if backend != MIXED or not members:
        return backend
    return f"{MIXED} ({', '.join(f'{m} {b}' for m, b in members.items())})"


def check_backend(backend: str) -> str:
    """``backend`` when it is one of :data:`BACKENDS`, else a :class:`ModelError` naming them."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r} ({' | '.join(BACKENDS)})")
    return backend


#: the test-time augmentation modes :func:`tta_views` takes (``None`` and ``"none"``: no augmentation)
TTA_MODES = (None, "none", "flip", "tencrop")


def tta_mode(tta: str | None, what: str = "tta") -> str | None:
    """``tta`` as ``"flip"``, ``"tencrop"`` or ``None`` (for ``None``, ``""`` and ``"none"`` in
    any case); any other value is a :class:`ModelError` naming ``what``. Every option and
    argument that takes a TTA mode is checked here."""
    if tta is None or (isinstance(tta, str) and tta.lower() in ("", "none")):
        return None
    if tta not in TTA_MODES:
        raise ModelError(f"{what} must be none, flip or tencrop, not {tta!r}")
    return tta


def tencrop_origins(h: int, w: int, ch: int, cw: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the five ch x cw crops of an h x w image that ten-crop TTA
    takes (four corners, then the centre; the other five views are their mirror images)."""
    return [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]


def mirror_index(width: int) -> np.ndarray:
    """Column order of a left-right mirror image. Views are mirrored by a gather with it, which,
    unlike ``torch.flip``, exports to every ONNX opset."""
    return np.arange(width - 1, -1, -1)


def mirror(faces: np.ndarray) -> np.ndarray:
    """``faces`` (``... x W``) mirrored left-right, as a new contiguous array."""
    return np.take(faces, mirror_index(faces.shape[-1]), axis=-1)


def tta_views(x, tta: str | None, crop: int = 44, *, flip=mirror, resize=None) -> list:
    """The views of a batch ``x`` (``... x H x W``) that TTA mode ``tta`` averages over.

    No mode: ``x`` alone. ``"flip"``: ``x`` and its mirror image. ``"tencrop"``: the four
    corners and the centre at ``crop`` x ``crop`` pixels (at most the image's size), each
    passed through ``resize`` when given, then the mirror images of those five. ``flip``
    mirrors one view (default :func:`mirror`, for numpy faces; a torch batch passes a gather
    with :func:`mirror_index`).
    """
    tta = tta_mode(tta)
    if tta is None:
        return [x]
    if tta == "flip":
        return [x, flip(x)]
    h, w = x.shape[-2:]
    ch, cw = min(crop, h), min(crop, w)
    crops = [x[..., y : y + ch, xx : xx + cw] for y, xx in tencrop_origins(h, w, ch, cw)]
    if resize is not None:
        crops = [resize(c) for c in crops]
    return crops + [flip(c) for c in crops]


def fold_classes(probabilities, class_map):
    """``probabilities`` (``N x C_from``, numpy or torch) moved onto other classes and renormalised.

    ``class_map`` is the ``C_to x C_from`` 0/1 matrix :func:`wildfer.labels.class_alignment`
    makes: a class the targets lack (FER+'s contempt for FER2013) is folded away and the rest
    renormalised to sum 1; a target class the source lacks gets 0. ``None``: unchanged.
    """
    if class_map is None:
        return probabilities
    p = probabilities @ class_map.T
    return p / p.sum(1, keepdims=True).clip(1e-12, None)


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


#: ITU-R 601 luma weights of R, G and B (FER2013's and OpenCV's grey conversion)
LUMA = (0.299, 0.587, 0.114)


def match_channels(x, channels: int):
    """A batch ``N x C x H x W`` (torch or numpy) with ``channels`` channels: grey (C = 1)
    repeated to three, RGB (C = 3) turned grey with :data:`LUMA`; as it is when it has them."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return np.repeat(x, 3, axis=1) if isinstance(x, np.ndarray) else x.expand(-1, 3, -1, -1)
    if x.shape[1] == 3 and channels == 1:
        if isinstance(x, np.ndarray):
            return np.tensordot(np.asarray(LUMA, x.dtype), x, axes=([0], [1]))[:, None]
        return (x * x.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise ModelError(f"faces with {x.shape[1]} channels; this classifier reads {channels} (1 grey, 3 RGB)")


def resize_planes(x: np.ndarray, size: int) -> np.ndarray:
    """A float batch ``N x C x H x W`` resized to ``size`` x ``size`` (bilinear, pixel centres
    aligned, no antialiasing: what ``torch.nn.functional.interpolate(..., "bilinear",
    align_corners=False)`` computes)."""
    import cv2

    n, c, h, w = x.shape
    if (h, w) == (size, size):
        return x
    planes = np.ascontiguousarray(x.reshape(n * c, h, w).transpose(1, 2, 0))
    out = np.empty((size, size, n * c), np.float32)
    for i in range(0, n * c, 512):  # OpenCV resizes at most 512 channels at once
        part = cv2.resize(planes[:, :, i:i + 512], (size, size), interpolation=cv2.INTER_LINEAR)
        out[:, :, i:i + 512] = part.reshape(size, size, -1)
    return out.transpose(2, 0, 1).reshape(n, c, size, size)


def pixel_batch(faces) -> np.ndarray:
    """Faces as a float32 ``N x C x H x W`` batch of 0-255 pixels (one grey face ``H x W`` and grey
    faces ``N x H x W`` get C = 1)."""
    x = np.asarray(faces, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    return x[:, None] if x.ndim == 3 else x


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``N x C`` logits, in float32."""
    z = np.asarray(logits, np.float32)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


@dataclass
class Classifier:
    """A trained network plus what is needed to use it.

    ``predict_proba(faces)`` takes uint8 faces ``N x 48 x 48`` (or ``N x H x W`` that are
    resized; colour faces ``N x 3 x H x W``) and returns probabilities ``N x C`` as numpy.

    ``module`` is the torch network, or ``None`` for a classifier that computes on a graph
    (``runner``) and makes its network with ``build`` when :attr:`net` is first asked for.
    """

    module: Any = None
    classes: tuple[str, ...] = FER2013_CLASSES
    preprocess: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PREPROCESS))
    name: str = ""
    arch: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    class_map: np.ndarray | None = None  # optional C_out x C_net matrix (e.g. FER+ 8 -> FER2013 7)
    out_classes: tuple[str, ...] | None = None
    backend: str = "torch"  # "torch", "onnx" or "int8" (see with_backend); an ensemble's may be MIXED
    runner: Any = None  # the onnxruntime runner of the onnx and int8 backends
    #: where the backend computes, "cpu" or "cuda:N" (the onnx backend's torch net, kept for
    #: gradients, stays on the CPU)
    device: str = "cpu"
    #: the float ONNX graph the weights were read from (built-ins), which the onnx backend runs
    graph: str | None = None
    #: makes the torch network when :attr:`net` is first asked for and ``module`` is None
    build: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.module is not None:
            self.module.eval()
        elif self.runner is None and self.build is None:
            raise ModelError(f"classifier {self.name!r} has neither a network nor a graph to compute with")
        pre, who = self.preprocess or {}, self.name or "model"
        if pre.get("temperature") is not None:  # a checkpoint's or graph's record is a user's file too
            checked_temperature(pre["temperature"], f"{who}: temperature")
        if pre.get("class_bias") is not None:
            checked_class_bias(pre["class_bias"], len(self.classes), f"{who}: class_bias")

    @property
    def net(self):
        """The torch network (``nn.Module``), made on first use for a classifier loaded as a graph
        (a :class:`~wildfer.errors.MissingTorch` where torch is not installed)."""
        if self.module is None:
            if self.build is None:
                raise ModelError(f"classifier {self.name!r} computes on an ONNX graph and has no torch network")
            import_torch(f"the torch network of {self.name or 'this model'} (saliency maps, training, backend torch)")
            self.module = self.build().eval()
        return self.module

    @property
    def member_backends(self) -> dict[str, str] | None:
        """What each member of a mixed ensemble computes on (``{"wild": "int8", ...}``), else ``None``."""
        names, backends = self.model_kwargs.get("members") or [], self.meta.get("member_backends") or []
        return dict(zip(names, backends)) if self.backend == MIXED and len(names) == len(backends) else None

    @property
    def backend_label(self) -> str:
        """:attr:`backend`, with each member's for a mixed ensemble (:func:`backend_label`)."""
        return backend_label(self.backend, self.member_backends)

    @property
    def has_net(self) -> bool:
        """Whether the torch network exists already (asking :attr:`net` would make it)."""
        return self.module is not None

    def to(self, device: Any = "auto") -> Classifier:
        """This classifier on ``device`` (:func:`resolve_device`): itself when it is there already,
        else a new one with its own copy of the network there (this one is left as it was).
        With the onnx backend the onnxruntime session is made again with the device's provider;
        the int8 backend computes on the CPU only."""
        target = resolve_device(device, self.backend)
        if target == self.device:
            return self
        if self.backend == "onnx":
            return self.with_backend("onnx", threads=getattr(self.runner, "threads", None), device=target)
        return dataclasses.replace(self, module=copy.deepcopy(self.net).to(target), device=target)

    def with_backend(self, backend: str, *, threads: int | None = None, device: Any = None) -> Classifier:
        """This classifier computing with ``backend`` on ``device`` (default: its own), as a new
        one: ``"onnx"`` runs an export of the network on onnxruntime with ``threads`` intra-op
        threads (:func:`wildfer.models.onnx.attach_onnx`; the network stays for gradients),
        ``"int8"`` runs the model's int8 graph there on the CPU
        (:func:`wildfer.models.quantize.attach_int8`), ``"torch"`` runs the network itself.
        A classifier loaded from a float graph (:attr:`graph`) runs that graph for ``"onnx"``."""
        check_backend(backend)
        device = self.device if device is None else device
        if backend == "onnx" and self.graph:
            from .runtime import OnnxRunner

            target = resolve_device(device, "onnx")
            return dataclasses.replace(self, runner=OnnxRunner(self.graph, threads=threads, device=target),
                                       backend="onnx", device=target)
        if backend == "onnx":  # onnx.py and quantize.py build on this module
            from .onnx import attach_onnx

            return attach_onnx(self, threads=threads, device=device)
        if backend == "int8":
            from .quantize import attach_int8

            resolve_device(device, "int8")  # a GPU asked for is an error
            return attach_int8(self, threads=threads)
        if self.backend == "torch":
            return self.to(device)
        return dataclasses.replace(self, backend="torch", runner=None, device="cpu").to(device)

    @property
    def input_device(self) -> torch.device:
        """Where :meth:`to_tensor` puts faces: the device of the torch network's weights."""
        torch = import_torch("torch tensors of faces")
        for t in self.net.parameters():
            return t.device
        for t in self.net.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def size(self) -> int:
        return int(self.preprocess.get("size", DEFAULT_PREPROCESS["size"]))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.out_classes or self.classes

    @property
    def channels(self) -> int:
        """The channels of the faces the network reads: 1 (grey, FER2013's) or 3 (RGB), from
        the preprocessing record's ``grayscale``."""
        return 1 if self.preprocess.get("grayscale", True) else 3

    @property
    def face_views(self) -> list[dict[str, Any]]:
        """The preprocessing records of the crops this classifier reads, one per distinct way of
        cutting a face (:func:`face_view`): its own record, or an ensemble's members' records when
        they cut faces in several ways (a 48-pixel grey member beside a 112-pixel colour one).
        :meth:`predict_proba` then takes a list of face arrays, one per view."""
        views = self.preprocess.get("views")
        return [dict(v) for v in views] if views else [dict(self.preprocess)]

    def _view_input(self, view: dict | None) -> tuple[int, int]:
        """``(size, channels)`` of the faces the network reads in ``view`` (one of
        :attr:`face_views`; ``None``: this classifier's own)."""
        if view is None:
            return self.size, self.channels
        return int(view.get("size", self.size)), (1 if view.get("grayscale", True) else 3)

    def to_tensor(self, faces, device: Any = None, view: dict | None = None) -> torch.Tensor:
        """uint8/float faces (grey N x H x W, or N x C x H x W with C = 1 or 3, 0-255) ->
        normalised float tensor on ``device`` (default: the network's, :attr:`input_device`),
        with :attr:`channels` channels: grey faces are repeated for a colour classifier, colour
        ones turned grey (ITU-R 601 luma) for a grey one. The one place faces move to the
        model's device: they travel as uint8, a quarter of the float bytes. ``view``: one of
        :attr:`face_views` (its size and channels; the normalisation stays this classifier's)."""
        torch = import_torch("torch tensors of faces")
        size, channels = self._view_input(view)
        x = torch.as_tensor(np.asarray(faces) if not isinstance(faces, torch.Tensor) else faces)
        x = x.to(self.input_device if device is None else device)
        if x.dim() == 2:
            x = x[None]
        if x.dim() == 3:
            x = x[:, None]
        x = match_channels(scale_pixels(x.float()), channels)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return self.normalize(x)

    def to_array(self, faces, view: dict | None = None) -> np.ndarray:
        """What :meth:`to_tensor` makes, as a float32 numpy batch ``N x C x H x W`` on the CPU
        (no torch): the input of this classifier's ONNX graph."""
        size, channels = self._view_input(view)
        return self.normalize(resize_planes(match_channels(scale_pixels(pixel_batch(faces)), channels), size))

    def normalize(self, x01):
        """0-1 pixels (numpy or torch) as this classifier's network input (:func:`normalize_input`)."""
        return normalize_input(x01, mean_std(self.preprocess))

    def graph_logits(self, faces, batch_size: int = 256) -> np.ndarray:
        """The graph's outputs ``N x C`` (numpy) for ``faces``: one array, or a list of arrays
        (one per :attr:`face_views`) for an ensemble whose members cut faces differently. Only
        for a classifier computing on a graph (``runner``); torch is not used."""
        if getattr(self.runner, "reads_faces", False):  # an ensemble of graphs: it cuts its own views
            return self.runner.logits(faces, batch_size)
        if isinstance(faces, (list, tuple)):
            views = self.face_views
            if len(faces) != len(views):
                raise ModelError(f"{len(faces)} face arrays for a classifier that reads {len(views)} views of each face")
            if len(views) > 1:
                raise ModelError(f"backend {self.backend!r} runs one graph on one view of each face; this classifier "
                                 f"reads {len(views)}: load it with backend int8 (each member on its own graph) or torch")
            faces = faces[0]
        n = len(faces)
        outs = [self.runner(self.to_array(faces[i:i + batch_size])) for i in range(0, n, batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, len(self.classes)), np.float32)

    def logits(self, faces, batch_size: int = 256) -> torch.Tensor:
        """Network outputs ``N x C`` for ``faces`` as a torch tensor, on the CPU whatever the
        device. ``faces`` is one array, or a list of arrays (the same faces, one per
        :attr:`face_views`)."""
        torch = import_torch("torch logits")
        with torch.inference_mode():
            if self.backend in GRAPH_BACKENDS and self.runner is not None:
                return torch.from_numpy(np.ascontiguousarray(self.graph_logits(faces, batch_size)))
            if isinstance(faces, (list, tuple)):
                return self._multi_view_logits(faces, batch_size)
            x = self.to_tensor(faces)
            outs = [self.net(x[i : i + batch_size]).cpu() for i in range(0, x.shape[0], batch_size)]
            return torch.cat(outs) if outs else torch.zeros(0, len(self.classes))

    def _multi_view_logits(self, faces, batch_size: int) -> torch.Tensor:
        import torch

        views = self.face_views
        if len(faces) != len(views):
            raise ModelError(f"{len(faces)} face arrays for a classifier that reads {len(views)} views of each face")
        xs = [self.to_tensor(f, view=v) for f, v in zip(faces, views)]
        n = xs[0].shape[0]
        outs = [self.net([x[i : i + batch_size] for x in xs]).cpu() for i in range(0, n, batch_size)]
        return torch.cat(outs) if outs else torch.zeros(0, len(self.classes))

    def predict_proba(self, faces, batch_size: int = 256, tta: bool = False) -> np.ndarray:
        """Probabilities ``N x C`` (numpy) of ``faces`` (one array, or one per :attr:`face_views`);
        ``tta``: averaged with those of their mirror images. A ``class_map`` folds them onto
        :attr:`labels` (:func:`fold_classes`). A ``temperature`` in the preprocessing record
        (calibration) divides the logits first, and a ``class_bias`` (one number per class of
        :attr:`classes`) is added to them."""
        if isinstance(faces, (list, tuple)):
            faces = [np.asarray(f) for f in faces]
            views = [faces, [mirror(f) for f in faces]] if tta else [faces]
        else:
            views = tta_views(np.asarray(faces), "flip") if tta else [faces]
        t = float(self.preprocess.get("temperature", 1.0))
        bias = np.asarray(self.preprocess.get("class_bias", np.zeros(len(self.classes))), dtype=np.float32)
        if self.backend in GRAPH_BACKENDS and self.runner is not None:  # numpy and onnxruntime only
            p = sum(softmax(self.graph_logits(v, batch_size) / np.float32(t) + bias) for v in views) / len(views)
            return fold_classes(p, self.class_map)
        import torch

        b = torch.from_numpy(bias)
        p = sum(torch.softmax(self.logits(v, batch_size).float() / t + b, dim=1) for v in views) / len(views)
        return fold_classes(p.numpy(), self.class_map)

    def predict(self, faces, **kw) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(faces, **kw).argmax(1)]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())
