"""Face regions (brows, eyes, nose, mouth, rest of the face, outside) and the share of
saliency each one holds.

The study judged by eye that "the mouth and the eyes are the key points"; this module turns
that into numbers: :func:`region_shares` is the fraction of a map's mass (``|map|``) inside
each region, to be read against :func:`region_areas` (the share a uniform map would get).

Template for aligned 48x48 FER2013 crops
----------------------------------------
Measured, not assumed: the mean of the 3,589 PublicTest faces (and of each class) has its
eye centres at (x, y) = (15.5, 17.5) and (31.5, 17.5) (the darkest points of a high-pass
filtered mean face, rows 15-20), the nostrils at y = 30-31 between x = 19 and 28, the mouth's
dark band at y = 36-40 from x = 16 to 31 (lower, to y = 44, on the surprise mean face), the
cheek edges at x = 7 and 41 and the chin at the bottom row. The template's shapes are
ellipses ``(cx, cy, rx, ry)`` in 48x48 pixel coordinates (pixel centres at integers) built
around those points; where two overlap, the earlier region in :data:`REGIONS` wins, so the
masks partition the image.

For faces found in wild photos, :func:`landmark_regions` maps the same template onto a face
through a similarity transform fitted to its 5 landmarks (right eye, left eye, nose tip,
right mouth corner, left mouth corner; "right" is the subject's right, on the image's left,
as YuNet / RetinaFace report them).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

#: Region names, in priority order; together they cover every pixel exactly once.
REGIONS: tuple[str, ...] = ("eyes", "brows", "nose", "mouth", "face_other", "outside")
#: The "key regions" of a face (used for the single key-region share over epochs).
KEY_REGIONS: tuple[str, ...] = ("eyes", "brows", "nose", "mouth")

#: Ellipses (cx, cy, rx, ry) per region, in 48x48 template coordinates.
TEMPLATE_48: dict[str, list[tuple[float, float, float, float]]] = {
    "eyes": [(15.5, 17.5, 5.5, 3.5), (31.5, 17.5, 5.5, 3.5)],
    "brows": [(15.5, 12.0, 6.5, 2.5), (31.5, 12.0, 6.5, 2.5)],
    "nose": [(23.5, 26.0, 4.5, 6.5)],
    "mouth": [(23.5, 39.0, 10.5, 5.0)],
    "face": [(23.5, 25.0, 17.0, 23.5)],
}

#: The template's 5 landmarks (x, y) in 48x48 coordinates: right eye, left eye, nose tip,
#: right mouth corner, left mouth corner (subject's right = image left).
TEMPLATE_LANDMARKS_48 = np.array(
    [[15.5, 17.5], [31.5, 17.5], [23.5, 28.5], [16.5, 38.5], [30.5, 38.5]], dtype=np.float64
)


def _in_ellipses(px: np.ndarray, py: np.ndarray, shapes) -> np.ndarray:
    m = np.zeros(px.shape, dtype=bool)
    for cx, cy, rx, ry in shapes:
        m |= ((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2 <= 1.0
    return m


def _partition(px: np.ndarray, py: np.ndarray) -> dict[str, np.ndarray]:
    """Masks for template coordinates ``(px, py)`` (any shape), disjoint, in REGIONS order."""
    taken = np.zeros(px.shape, dtype=bool)
    out: dict[str, np.ndarray] = {}
    face = _in_ellipses(px, py, TEMPLATE_48["face"])
    for name in ("eyes", "brows", "nose", "mouth"):
        m = _in_ellipses(px, py, TEMPLATE_48[name]) & ~taken
        out[name] = m
        taken |= m
    out["face_other"] = face & ~taken
    out["outside"] = ~(face | taken)
    return out


def template_regions(size: int | tuple[int, int] = 48) -> dict[str, np.ndarray]:
    """Boolean masks ``H x W`` per region for an aligned FER2013-style crop of ``size``."""
    h, w = (size, size) if isinstance(size, int) else size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    px = (xs + 0.5) * 48.0 / w - 0.5
    py = (ys + 0.5) * 48.0 / h - 0.5
    return _partition(px, py)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) ``src -> dst`` (Umeyama 1991)
    as a 2 x 3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    r = u @ np.diag(d) @ vt
    var = (s0**2).sum() / len(src)
    scale = (sig * d).sum() / var if var > 0 else 1.0
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def landmark_regions(landmarks, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Region masks for an image of ``shape`` (H, W) holding a face with 5 ``landmarks``
    (x, y pixel coordinates: right eye, left eye, nose, right mouth corner, left mouth corner).

    The 48x48 template is placed on the face by the similarity transform that best maps the
    template's landmarks onto the given ones, so the regions follow the face's position,
    size and in-plane rotation.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if lm.shape != (5, 2):
        raise ValueError(f"expected 5 (x, y) landmarks, got shape {np.asarray(landmarks).shape}")
    m = similarity_transform(TEMPLATE_LANDMARKS_48, lm)  # template -> image
    a = np.vstack([m, [0, 0, 1]])
    inv = np.linalg.inv(a)
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    px = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    py = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    return _partition(px, py)


def _as_maps(maps) -> np.ndarray:
    """Any N x 1 x H x W / N x C x H x W / N x H x W / H x W map(s) -> N x H x W of |map|."""
    if hasattr(maps, "detach"):
        maps = maps.detach().cpu().numpy()
    a = np.abs(np.asarray(maps, dtype=np.float64))
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 4:
        a = a.sum(1)
    if a.ndim != 3:
        raise ValueError(f"maps must be H x W, N x H x W or N x C x H x W, got shape {a.shape}")
    return a


def region_shares(maps, regions: Mapping[str, np.ndarray] | None = None, *, reduce: bool = True):
    """Share of saliency mass (``|map|``, summed over channels) inside each region.

    ``regions`` maps names to boolean masks ``H x W`` (one layout for every map, e.g.
    :func:`template_regions`) or ``N x H x W`` (one per map, e.g. from landmarks); the default
    is the 48x48 template scaled to the maps' size. Maps with no mass at all are left out.

    Returns ``{region: mean share}`` (``reduce=True``) or ``{region: array of N shares}``
    (NaN for maps with no mass).
    """
    a = _as_maps(maps)
    if regions is None:
        regions = template_regions(a.shape[1:])
    total = a.sum(axis=(1, 2))
    ok = total > 0
    out = {}
    for name, mask in regions.items():
        mk = np.asarray(mask, dtype=bool)
        if mk.shape[-2:] != a.shape[1:]:
            raise ValueError(f"region {name!r} mask {mk.shape} does not match maps {a.shape[1:]}")
        mass = (a * mk).sum(axis=(1, 2)) if mk.ndim == 3 else (a * mk[None]).sum(axis=(1, 2))
        share = np.where(ok, mass / np.where(ok, total, 1.0), np.nan)
        out[name] = float(np.mean(share[ok])) if reduce and ok.any() else (float("nan") if reduce else share)
    return out


def region_areas(regions: Mapping[str, np.ndarray] | None = None, size: int = 48) -> dict[str, float]:
    """Each region's share of the image area: what a uniform (uninformative) map gives."""
    regions = regions if regions is not None else template_regions(size)
    return {k: float(np.asarray(v, dtype=bool).mean()) for k, v in regions.items()}


def key_share(shares: Mapping[str, float]) -> float:
    """Total share of the key regions (eyes, brows, nose, mouth)."""
    return float(sum(shares.get(k, 0.0) for k in KEY_REGIONS))


def region_label_image(regions: Mapping[str, np.ndarray]) -> np.ndarray:
    """An ``H x W`` int image: the index in :data:`REGIONS` of each pixel's region."""
    first = next(iter(regions.values()))
    lab = np.full(np.asarray(first).shape, -1, dtype=np.int64)
    for i, name in enumerate(REGIONS):
        if name in regions:
            lab[np.asarray(regions[name], dtype=bool) & (lab < 0)] = i
    return lab
