"""Augmentation written on torch, applied to whole batches (fast on a CPU, no torchvision).

Every random draw comes from an explicit ``torch.Generator`` so runs are deterministic
under a seed. Inputs are float tensors ``N x C x H x W`` in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Augment:
    """Random resized crop + shift + rotation (one affine warp), horizontal flip,
    brightness / contrast jitter and random erasing, and (off by default) the degradations
    of wild photos.

    ``scale``: area fraction range of the crop; ``shift``: max translation as a fraction of
    the side; ``rotate``: max degrees; ``erase``: probability of erasing one rectangle.

    Wild conditions (each 0 = off; a run with all of them off draws exactly the random
    numbers it drew before they existed): ``shear``: max horizontal shear (tangent), a cheap
    stand-in for a head turned out of plane; ``gamma``: gamma drawn log-uniformly in
    ``[e^-gamma, e^gamma]`` (exposure); ``blur``: probability of a Gaussian blur with sigma in
    ``blur_sigma`` pixels (focus, motion); ``lowres``: probability of down-sampling to a side in
    ``lowres_side`` and back (a small face upscaled); ``noise``: max standard deviation of
    Gaussian pixel noise (sensor noise); ``jpeg``: probability of JPEG re-encoding at a
    quality in ``jpeg_quality`` (web photos; done with OpenCV on the CPU).
    """

    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.1
    rotate: float = 10.0
    hflip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    erase: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.2)
    shear: float = 0.0
    gamma: float = 0.0
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.4, 1.4)
    lowres: float = 0.0
    lowres_side: tuple[int, int] = (16, 36)
    noise: float = 0.0
    jpeg: float = 0.0
    jpeg_quality: tuple[int, int] = (25, 85)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() == 3:
            return self(x.unsqueeze(0), generator)[0]
        n, c, h, w = x.shape
        g = generator

        def u(lo, hi, *shape):
            return torch.rand(*(shape or (n,)), generator=g) * (hi - lo) + lo

        area = u(*self.scale)
        logr = u(math.log(self.ratio[0]), math.log(self.ratio[1]))
        ar = torch.exp(logr)
        sx = torch.sqrt(area * ar).clamp(max=1.0)  # crop width as fraction of side
        sy = torch.sqrt(area / ar).clamp(max=1.0)
        # centre offsets: crop must fit (+ extra shift), in normalised [-1, 1] coordinates
        tx = u(-1, 1) * ((1 - sx) + 2 * self.shift)
        ty = u(-1, 1) * ((1 - sy) + 2 * self.shift)
        ang = u(-self.rotate, self.rotate) * math.pi / 180.0
        flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(n)
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos * sx * flip
        theta[:, 0, 1] = -sin * sy
        theta[:, 1, 0] = sin * sx * flip
        theta[:, 1, 1] = cos * sy
        theta[:, 0, 2] = tx
        theta[:, 1, 2] = ty
        if self.shear:
            theta[:, 0, 1] += u(-self.shear, self.shear) * sy
        # the draws above come from the (CPU) generator whatever the device, so a run is the same
        # random stream on a CPU and a GPU; only the warp itself runs where ``x`` lives
        grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if self.brightness or self.contrast:
            b = u(-self.brightness, self.brightness).view(n, 1, 1, 1).to(x.device)
            k = u(1 - self.contrast, 1 + self.contrast).view(n, 1, 1, 1).to(x.device)
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = ((out - mean) * k + mean + b).clamp(0, 1)
        out = self._wild(out, g)
        if self.erase > 0:
            out = random_erase(out, self.erase, self.erase_area, g)
        return out

    def _wild(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """The wild-photo degradations, in the order a camera and a web server apply them."""
        n = x.shape[0]
        if self.gamma:
            k = torch.exp((torch.rand(n, generator=g) * 2 - 1) * self.gamma).view(n, 1, 1, 1).to(x.device)
            x = x.clamp(1e-4, 1) ** k
        if self.blur:
            x = gaussian_blur(x, torch.rand(n, generator=g) < self.blur,
                              torch.rand(n, generator=g) * (self.blur_sigma[1] - self.blur_sigma[0]) + self.blur_sigma[0])
        if self.lowres:
            x = downsample_up(x, torch.rand(n, generator=g) < self.lowres,
                              torch.randint(self.lowres_side[0], self.lowres_side[1] + 1, (n,), generator=g))
        if self.noise:
            std = (torch.rand(n, generator=g) * self.noise).view(n, 1, 1, 1)
            x = (x + (torch.randn(x.shape, generator=g) * std).to(x.device, x.dtype)).clamp(0, 1)
        if self.jpeg:
            x = jpeg_roundtrip(x, torch.rand(n, generator=g) < self.jpeg,
                               torch.randint(self.jpeg_quality[0], self.jpeg_quality[1] + 1, (n,), generator=g))
        return x


def gaussian_blur(x: torch.Tensor, do: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur the images where ``do`` with a per-image Gaussian of std ``sigma`` pixels (separable, 7 taps)."""
    if not bool(do.any()):
        return x
    n, c, h, w = x.shape
    r = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.view(-1, 1).clamp(min=1e-3) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0).to(x.device, x.dtype)  # (n*c) x 7
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (3, 3, 0, 0), mode="reflect"), k.view(n * c, 1, 1, 7), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="reflect"), k.view(n * c, 1, 7, 1), groups=n * c)
    return torch.where(do.view(n, 1, 1, 1).to(x.device), y.view(n, c, h, w), x)


def downsample_up(x: torch.Tensor, do: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Area-downsample the images where ``do`` to ``side`` pixels and bilinearly back up."""
    out = x.clone()
    h, w = x.shape[-2:]
    for s in torch.unique(side[do]).tolist():
        idx = torch.nonzero(do & (side == s)).flatten().to(x.device)
        small = F.interpolate(x[idx], size=(int(s), int(s)), mode="area")
        out[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def jpeg_roundtrip(x: torch.Tensor, do: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-encode and decode the images where ``do`` at ``quality`` (OpenCV, per image)."""
    import cv2
    import numpy as np

    if not bool(do.any()):
        return x
    out = x.clone()
    for i in torch.nonzero(do).flatten().tolist():
        img = (x[i].detach().float().cpu().permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
        dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED if img.shape[2] > 1 else cv2.IMREAD_GRAYSCALE)
        dec = dec.reshape(img.shape)
        out[i] = torch.from_numpy(dec).permute(2, 0, 1).to(x.device, x.dtype) / 255.0
    return out


def random_erase(
    x: torch.Tensor, p: float, area: tuple[float, float], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Erase one random rectangle per image with probability ``p`` (filled with noise)."""
    n, c, h, w = x.shape
    g = generator
    do = torch.rand(n, generator=g) < p
    a = torch.rand(n, generator=g) * (area[1] - area[0]) + area[0]
    r = torch.exp(torch.rand(n, generator=g) * (math.log(3.0) - math.log(1 / 3.0)) + math.log(1 / 3.0))
    eh = (torch.sqrt(a * r) * h).clamp(1, h).long()
    ew = (torch.sqrt(a / r) * w).clamp(1, w).long()
    y0 = (torch.rand(n, generator=g) * (h - eh + 1).float()).long()
    x0 = (torch.rand(n, generator=g) * (w - ew + 1).float()).long()
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    mask = (
        (ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
        & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1))
        & do.view(n, 1, 1)
    ).unsqueeze(1)
    noise = torch.rand(x.shape, generator=g, dtype=x.dtype)
    return torch.where(mask.to(x.device), noise.to(x.device), x)


def mixup_cutmix(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix a batch (Zhang et al. 2018 mixup / Yun et al. 2019 CutMix). Returns soft targets.

    ``y`` may be class indices (N,) or soft targets (N x C). With both alphas > 0 one of the
    two is picked per batch with equal chance.
    """
    if y.dim() == 1:
        y = F.one_hot(y, num_classes).float()
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return x, y
    use_cut = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand(1, generator=generator).item() < 0.5)
    alpha = cutmix_alpha if use_cut else mixup_alpha
    lam = float(torch.distributions.Beta(alpha, alpha).sample().item()) if generator is None else float(
        _beta(alpha, generator)
    )
    perm = torch.randperm(x.shape[0], generator=generator)
    if use_cut:
        h, w = x.shape[-2:]
        rh, rw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy = int(torch.randint(h, (1,), generator=generator))
        cx = int(torch.randint(w, (1,), generator=generator))
        y0, y1 = max(cy - rh // 2, 0), min(cy + rh // 2, h)
        x0, x1 = max(cx - rw // 2, 0), min(cx + rw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * y + (1 - lam) * y[perm]


def _beta(alpha: float, generator: torch.Generator) -> float:
    # Beta(a, a) from two Gamma draws, using the generator (torch's Beta takes none).
    import numpy as np

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))
