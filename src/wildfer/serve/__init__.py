"""wildfer over HTTP: ``create_app(...)`` builds the FastAPI app (API + web page) around one
:class:`~wildfer.wild.Recognizer`; ``wildfer serve`` runs it on uvicorn.

>>> from wildfer.serve import create_app
>>> app = create_app(model="default")     # doctest: +SKIP  (the model loads at startup)
"""

__all__ = ["create_app", "EXPLAIN_METHODS"]

_HOMES = {"create_app": "app", "EXPLAIN_METHODS": "routes"}  # name -> its module in this package


def __getattr__(name):  # lazy: keep `wildfer --help` from importing fastapi
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'wildfer.serve' has no attribute {name!r}")
