"""Class names and label normalisation shared by every stage."""

from __future__ import annotations

#: FER2013's seven classes, in the dataset's index order.
FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: FER+ classes (majority-vote protocol keeps these 8; unknown / NF rows are dropped).
FERPLUS_CLASSES: tuple[str, ...] = (
    "neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt",
)

_ALIASES = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "smile": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "calm": "neutral",
    "contempt": "contempt",
}


def normalize_label(name: str) -> str:
    """Map a label spelling (``Anger``, ``happiness``, ``Surprised`` ...) to wildfer's name.

    Unknown names are returned lower-cased and stripped so callers can report them.
    """
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    return _ALIASES.get(key, key)


def class_alignment(model_classes, target_classes):
    """``C_target x C_model`` 0/1 float matrix mapping a model's outputs onto other classes by
    name (``probs @ m.T``, then renormalise: a class the targets lack, e.g. FER+'s contempt for
    FER2013, is folded away; a target class the model lacks gets 0); ``None`` when they already
    agree. Raises :class:`~wildfer.errors.ModelError` when no class name is shared."""
    import numpy as np

    from .errors import ModelError

    model_classes, target_classes = list(model_classes), list(target_classes)
    if model_classes == target_classes:
        return None
    m = np.zeros((len(target_classes), len(model_classes)), dtype=np.float64)
    for j, c in enumerate(model_classes):
        if c in target_classes:
            m[target_classes.index(c), j] = 1.0
    if m.sum() == 0:
        raise ModelError(f"the model's classes {model_classes} share no name with {target_classes}")
    return m
