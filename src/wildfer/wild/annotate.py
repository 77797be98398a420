"""Draw results on a photo: a box per face, its label and a small bar chart of probabilities."""

from __future__ import annotations

import numpy as np

#: One colour per emotion (boxes, label tags and bars), chosen to stay readable on photos.
COLOURS = {
    "angry": (230, 57, 70), "disgust": (106, 153, 78), "fear": (155, 93, 229), "happy": (255, 190, 11),
    "sad": (58, 134, 255), "surprise": (255, 112, 166), "neutral": (200, 200, 200), "contempt": (141, 110, 99),
}
SHORT = {"angry": "ang", "disgust": "dis", "fear": "fea", "happy": "hap", "sad": "sad", "surprise": "sur",
         "neutral": "neu", "contempt": "con"}


def colour(label: str) -> tuple[int, int, int]:
    return COLOURS.get(label, (255, 255, 255))


def annotate(image, result, *, bars: bool = True, landmarks: bool = False):
    """``image`` (RGB array or PIL image) with ``result``'s faces drawn on it, as a PIL RGB image.

    Each face gets a box in its label's colour, a tag ``label 0.93`` above it (flags such as
    ``small`` are appended), and, with ``bars``, one thin bar per emotion beside the box whose
    length is the probability. Sizes follow the photo and the face so both a 300 px portrait
    and a 4K group photo stay legible.
    """
    from PIL import Image, ImageDraw, ImageFont

    img = image.copy().convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)).convert("RGB")
    draw = ImageDraw.Draw(img)
    W, H = img.size
    base = max(W, H)
    lw = max(1, round(base / 500))
    for f in result.faces:
        l, t, r, b = f.box
        c = colour(f.label)
        draw.rectangle([l, t, r, b], outline=c, width=lw)
        fw = max(r - l, 1.0)
        fs = int(np.clip(max(fw * 0.14, base / 90), 9, 40))
        font = ImageFont.load_default(size=fs)
        tag = f"{f.label} {f.confidence:.2f}"
        extra = [x for x in f.flags if x not in ("whole",)]
        if extra:
            tag += " (" + ",".join(extra) + ")"
        tb = draw.textbbox((0, 0), tag, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = t - th - 2 * lw - 2 if t - th - 2 * lw - 2 >= 0 else b + lw
        draw.rectangle([l, ty, l + tw + 4, ty + th + 4], fill=c)
        draw.text((l + 2, ty + 2 - tb[1]), tag, fill=(0, 0, 0), font=font)
        if landmarks and f.landmarks:
            rr = max(1, lw)
            for x, y in f.landmarks:
                draw.ellipse([x - rr, y - rr, x + rr, y + rr], fill=c)
        if bars and f.probs:
            _bars(draw, f, (l, t, r, b), W, H, lw)
    return img


def _bars(draw, f, box, W: int, H: int, lw: int) -> None:
    from PIL import ImageFont

    l, t, r, b = box
    n = len(f.probs)
    fh = max(b - t, 1.0)
    bh = float(np.clip(fh / (n * 2.2), 2.0, 14.0))
    gap = max(1.0, bh * 0.25)
    named = bh >= 7  # names only where they are legible
    font = ImageFont.load_default(size=int(bh)) if named else None
    name_w = (max(draw.textlength(SHORT.get(k, k[:3]), font=font) for k in f.probs) + 3) if named else 0.0
    bar_w = float(np.clip((r - l) * 0.5, 16.0, 120.0))
    x0 = r + lw + 3
    if x0 + name_w + bar_w > W:  # no room on the right: put the chart on the left
        x0 = max(0.0, l - lw - 3 - name_w - bar_w)
    y = t
    for k, p in f.probs.items():
        draw.rectangle([x0, y, x0 + name_w + bar_w, y + bh], fill=(0, 0, 0))
        if named:
            draw.text((x0 + 1, y), SHORT.get(k, k[:3]), fill=(255, 255, 255), font=font)
        inset = min(1.0, bh / 4)
        draw.rectangle([x0 + name_w, y + inset, x0 + name_w + max(1.0, bar_w * float(p)), max(y + bh - inset, y + inset)],
                       fill=colour(k))
        y += bh + gap
