"""wildfer: facial expression recognition on wild photos.

>>> import wildfer
>>> clf = wildfer.load_model("default")                     # doctest: +SKIP
>>> rec = wildfer.Recognizer(model="default")              # doctest: +SKIP
>>> [f.label for f in rec.predict("photo.jpg").faces]      # doctest: +SKIP
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "create_model", "list_models", "Recognizer"]


def __getattr__(name):  # lazy: keep `import wildfer` and `wildfer --help` fast
    if name == "load_model":
        from .models.loader import load_model

        return load_model
    if name in ("create_model", "list_models"):
        from . import models

        return getattr(models, name)
    if name == "Recognizer":
        from .wild import Recognizer

        return Recognizer
    raise AttributeError(f"module 'wildfer' has no attribute {name!r}")
