"""ImageNet-size model forms: loading torchvision-format weights from a file the user gives,
freezing the trunk, and feeding them wildfer's 48x48 grayscale faces.

Nothing is ever downloaded. ``load_torchvision_weights(model, path)`` reads a ``.pth`` (with
``torch.load(weights_only=True)``) or ``.safetensors`` file whose keys follow torchvision's
(or, for Inception-ResNet-v2, timm's) naming and copies every tensor whose name and shape fit:

* the first convolution of a 3-channel file is summed over its colour channels when the model
  takes 1 channel (a grayscale model keeps the pretrained filters' luminance response);
* a classifier layer whose shape differs (ImageNet's 1000 classes vs our 7) keeps its fresh
  initialisation and is listed as ``reinitialised``;
* any other missing or misshapen tensor means the file is not weights for this architecture,
  which is a :class:`~wildfer.errors.ModelError`.

Where a file is looked for when the user passes ``pretrained=True`` instead of a path:
``$WILDFER_PRETRAINED_DIR``, then torch hub's checkpoint folder (where torchvision itself keeps
the files it downloads, ``~/.cache/torch/hub/checkpoints``), then wildfer's user data folder.

``freeze(model, "features")`` is the study's baseline "pretrained VGG-16, fine-tune only the
last fully connected layers": the convolutional trunk stops learning (``requires_grad=False``,
and its batch-norm statistics stay fixed), the fully connected head trains.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ModelError
from .classifier import DEFAULT_PREPROCESS

#: torchvision's (timm's for Inception-ResNet-v2) ImageNet weight file for each ImageNet form.
WEIGHT_FILES: dict[str, str] = {
    "alexnet_imagenet": "alexnet-owt-7be5be79.pth",
    "vgg16_imagenet": "vgg16-397923af.pth",
    "vgg16_bn_imagenet": "vgg16_bn-6c64b313.pth",
    "inception_imagenet": "googlenet-1378be20.pth",
    "inception_resnet_imagenet": "inception_resnet_v2-940b1cd6.pth",
}

#: where each file comes from, for the error message (we never fetch it ourselves).
WEIGHT_SOURCES: dict[str, str] = {
    "alexnet_imagenet": "torchvision.models.alexnet(weights='IMAGENET1K_V1')",
    "vgg16_imagenet": "torchvision.models.vgg16(weights='IMAGENET1K_V1')",
    "vgg16_bn_imagenet": "torchvision.models.vgg16_bn(weights='IMAGENET1K_V1')",
    "inception_imagenet": "torchvision.models.googlenet(weights='IMAGENET1K_V1')",
    "inception_resnet_imagenet": "timm.create_model('inception_resnet_v2', pretrained=True)",
}

#: ImageNet input statistics (torchvision's alexnet/vgg) and Inception's (x - 0.5) / 0.5.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

FREEZE_CHOICES = ("features", "all_but_last")


def search_dirs() -> list[Path]:
    """Folders searched for a weights file given by name only (``pretrained=True``)."""
    dirs: list[Path] = []
    if os.environ.get("WILDFER_PRETRAINED_DIR"):
        dirs.append(Path(os.environ["WILDFER_PRETRAINED_DIR"]).expanduser())
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    try:
        from platformdirs import user_data_dir

        dirs.append(Path(user_data_dir("wildfer")) / "pretrained")
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        pass
    return dirs


def resolve_weights_path(arch: str, pretrained: str | os.PathLike | bool) -> Path:
    """The file to read for ``pretrained`` (a path, or ``True`` = look up the standard name).

    Raises :class:`ModelError` naming the file and the folders when it is not there.
    """
    fname = WEIGHT_FILES.get(arch, f"{arch}.pth")
    source = WEIGHT_SOURCES.get(arch, "")
    how = f" (the file {source} downloads)" if source else ""
    if pretrained is True or (isinstance(pretrained, str) and pretrained.lower() in ("true", "imagenet", "yes")):
        dirs = search_dirs()
        for d in dirs:
            if (d / fname).is_file():
                return d / fname
        raise ModelError(
            f"{arch}: ImageNet weights not found; wildfer downloads nothing. Put {fname}{how} in "
            f"{dirs[0]}, or pass pretrained=/path/to/{fname} (looked in: {', '.join(str(d) for d in dirs)})"
        )
    path = Path(os.fspath(pretrained)).expanduser()
    if not path.is_file():
        raise ModelError(
            f"{path}: ImageNet weights file not found; wildfer downloads nothing. For {arch} give "
            f"torchvision-format weights, e.g. {fname}{how}, with pretrained=/path/to/{fname}"
        )
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.bin`` (``weights_only=True``) or ``.safetensors`` file.

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``,
    and strips DataParallel's ``module.`` prefix.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's wrong file
        from .files import load_failure_reason

        raise ModelError(f"{path}: not a readable weights file ({load_failure_reason(e, path)})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def load_torchvision_weights(model: nn.Module, path: str | os.PathLike, *, verbose: bool = False) -> dict[str, list[str]]:
    """Copy torchvision-format ImageNet weights from ``path`` into ``model``.

    Returns a report ``{"loaded": [...], "reinitialised": [...], "adapted": [...],
    "ignored": [...]}``: ``reinitialised`` are head tensors whose shape differs (class count),
    ``adapted`` are first-conv weights summed from RGB to grayscale, ``ignored`` are tensors in
    the file the model has no use for (e.g. GoogLeNet's auxiliary heads when the model has
    none). Anything else that does not fit raises :class:`ModelError`.
    """
    arch = getattr(model, "wildfer_name", type(model).__name__)
    src = read_state_dict(path)
    for old, new in getattr(model, "weight_key_aliases", {}).items():  # e.g. Cadene's last_linear
        for k in [k for k in src if k.startswith(old + ".")]:
            src[new + k[len(old):]] = src.pop(k)
    head = tuple(getattr(model, "head_keys", ()))
    optional = tuple(getattr(model, "optional_keys", ()))
    first = getattr(model, "first_conv_key", None)
    own = model.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "reinitialised": [], "adapted": [], "ignored": []}
    new_state: dict[str, torch.Tensor] = {}
    missing, misfit = [], []
    for k, ref in own.items():
        if k not in src:
            if k.startswith(optional) or k.endswith("num_batches_tracked"):
                report["reinitialised"].append(k)
                continue
            missing.append(k)
            continue
        v = src[k]
        if v.shape == ref.shape:
            new_state[k] = v.to(ref.dtype)
            report["loaded"].append(k)
        elif first and k == first + ".weight" and v.dim() == 4 and v.shape[0] == ref.shape[0] \
                and v.shape[2:] == ref.shape[2:] and ref.shape[1] == 1:
            new_state[k] = v.sum(dim=1, keepdim=True).to(ref.dtype)
            report["adapted"].append(k)
        elif k.startswith(head):
            report["reinitialised"].append(k)
        else:
            misfit.append(f"{k} {tuple(v.shape)} vs {tuple(ref.shape)}")
    report["ignored"] = sorted(k for k in src if k not in own)
    if missing or misfit:
        what = (f"{len(missing)} of {len(own)} tensors missing (e.g. {', '.join(missing[:3])})" if missing else
                f"{len(misfit)} tensors of the wrong shape (e.g. {'; '.join(misfit[:2])})")
        raise ModelError(
            f"{path}: not torchvision-format weights for {arch} ({what}); expected "
            f"{WEIGHT_FILES.get(arch, 'the matching torchvision file')} at width 1"
        )
    model.load_state_dict(new_state, strict=False)
    if verbose:
        print(f"{arch}: loaded {len(report['loaded'])} tensors from {path}; "
              f"reinitialised {', '.join(report['reinitialised']) or 'none'}")
    return report


# ----------------------------------------------------------------------------- freezing


def _bn_eval(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def freeze(model: nn.Module, what: str | bool | None = "features") -> nn.Module:
    """Stop parts of ``model`` from learning; returns ``model``.

    ``"features"`` (or ``True``): everything but the fully connected head (``model.head_modules``)
    is frozen; ``"all_but_last"``: everything but the last linear layer. Frozen parameters get
    ``requires_grad=False`` (so the optimizer skips them) and frozen batch-norm layers keep their
    running statistics (they stay in eval mode when the model is put in training mode).
    """
    if not what:
        return model
    if what is True:
        what = "features"
    if what not in FREEZE_CHOICES:
        raise ModelError(f"freeze={what!r}: choose one of {', '.join(FREEZE_CHOICES)}")
    trainable: Iterable[str] = model.head_modules if what == "features" else model.last_layer  # type: ignore[attr-defined]
    trainable = tuple(trainable)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(trainable))
    frozen = [m for n, m in model.named_children() if not any(t == n or t.startswith(n + ".") for t in trainable)]
    model.frozen_modules = frozen  # type: ignore[attr-defined]
    model.frozen = what  # type: ignore[attr-defined]
    for m in frozen:
        _bn_eval(m)
    return model


class ImageNetForm(nn.Module):
    """Mixin for the ImageNet-size forms (224 or 299 pixels, 3 channels).

    They take wildfer's input (grayscale or RGB, any size, normalised ``(x/255 - mean) / std``
    with :data:`~wildfer.models.classifier.DEFAULT_PREPROCESS`) and adapt it: a 1-channel face
    is repeated to 3 channels, resized to the net's input size (bilinear), and renormalised to
    the statistics the ImageNet weights were trained with.
    Subclasses call :meth:`set_form` in their constructor, set ``imagenet_mean`` and
    ``imagenet_std`` when their weights expect other statistics (see :class:`InceptionForm`),
    and call :meth:`adapt_input` first in ``forward`` when ``self.imagenet``.
    """

    input_px: int = 224
    imagenet_mean: tuple[float, float, float] = IMAGENET_MEAN
    imagenet_std: tuple[float, float, float] = IMAGENET_STD
    resize_input: bool = True

    def set_form(self, imagenet: bool, in_chans: int, input_size: int | None, imagenet_px: int = 224) -> None:
        """Record which form this net is: ``imagenet`` (the pretrained-size form, which adapts its
        input) or the 48x48 one, the channels it takes, and its input side (``input_size``, else
        ``imagenet_px`` for the ImageNet form and 48 for the other)."""
        self.imagenet = imagenet
        self.net_in_chans = in_chans
        self.input_px = input_size or (imagenet_px if imagenet else DEFAULT_PREPROCESS["size"])

    def adapt_input(self, x: torch.Tensor) -> torch.Tensor:
        want = self.net_in_chans  # type: ignore[attr-defined]
        if x.shape[1] == 1 and want == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.resize_input and (x.shape[-1] != self.input_px or x.shape[-2] != self.input_px):
            x = F.interpolate(x, size=(self.input_px, self.input_px), mode="bilinear", align_corners=False)
        c = x.shape[1]
        mean = torch.tensor(self.imagenet_mean[:c] if c == 3 else (sum(self.imagenet_mean) / 3,), dtype=x.dtype, device=x.device)
        std = torch.tensor(self.imagenet_std[:c] if c == 3 else (sum(self.imagenet_std) / 3,), dtype=x.dtype, device=x.device)
        # wildfer-normalised -> [0, 1] -> ImageNet-normalised, as one affine map per channel
        scale = DEFAULT_PREPROCESS["std"] / std
        shift = (DEFAULT_PREPROCESS["mean"] - mean) / std
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def train(self, mode: bool = True):  # keep frozen batch norms frozen
        super().train(mode)
        for m in getattr(self, "frozen_modules", ()):
            _bn_eval(m)
        return self


class InceptionForm(ImageNetForm):
    """The Inception family's ImageNet forms: their weights expect ``(x - 0.5) / 0.5`` inputs
    (torchvision's ``transform_input=True`` for GoogLeNet, timm's for Inception-ResNet-v2)."""

    imagenet_mean = INCEPTION_MEAN
    imagenet_std = INCEPTION_STD


class FeaturesClassifierForm(ImageNetForm):
    """torchvision's AlexNet / VGG layout: a ``features`` trunk, an ``avgpool`` (identity in the
    48x48 forms), then a ``classifier`` ``Sequential`` whose index 6 is the class layer.

    One place for what AlexNet and VGG-16 share: the names torchvision weight files are matched
    on (``head_keys``, ``first_conv_key``) and frozen by (``head_modules``, ``last_layer``), the
    forward pass, and torchvision's initialisation. Subclasses call :meth:`set_form`, build
    the three modules, then call :meth:`init_weights`.
    """

    head_modules = ("classifier",)
    last_layer = ("classifier.6",)
    head_keys = ("classifier.6.",)
    first_conv_key = "features.0"

    def init_weights(self) -> None:
        """torchvision's AlexNet/VGG initialisation: Kaiming-normal (fan-out) convolutions,
        unit batch norms, N(0, 0.01) linear layers, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.imagenet:  # type: ignore[attr-defined]
            x = self.adapt_input(x)
        x = self.avgpool(self.features(x))  # type: ignore[attr-defined]
        return self.classifier(torch.flatten(x, 1))  # type: ignore[attr-defined]


def setup_imagenet_form(build: Callable[[], nn.Module], arch: str, pretrained, freeze_what,
                        freeze_features: bool) -> nn.Module:
    """Common tail of every ImageNet-form factory: find the weights file (before building, so a
    missing file fails fast), build, load the weights, then freeze."""
    path = resolve_weights_path(arch, pretrained) if pretrained else None
    model = build()
    model.wildfer_name = arch  # type: ignore[attr-defined]
    if path is not None:
        load_torchvision_weights(model, path)
    what = freeze_what or ("features" if freeze_features else None)
    if what:
        freeze(model, what)
    return model
