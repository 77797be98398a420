"""The service's settings in one place: :class:`ServeConfig`, every field with its default and
its declared range, checked at once like :class:`wildfer.train.config.TrainConfig`.

>>> cfg = ServeConfig(model="wild", timeout=30, max_explain=4)
>>> cfg.check()                      # raises WildferError naming the field and its range
>>> create_app(config=cfg)           # doctest: +SKIP  (or create_app(model="wild", timeout=30))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import WildferError, short

#: Largest photo decoded by the server (pixels). Lower than the library's limit: a server
#: decodes several photos at once, and 40 MP is already 120 MB of RGB.
SERVER_MAX_PIXELS = 40_000_000
#: Largest image the server works on (pixels): bigger photos are downscaled to this after
#: decoding. The detector looks at 640 pixels anyway; this bounds the saliency maps, the
#: overlay and the memory one request holds (a 40 MP overlay took 14 s and 3.5 GB).
SERVER_WORK_PIXELS = 4_000_000
#: The same for saliency maps: the overlay costs about 0.35 us of CPU per pixel here, and the
#: per-face maps are 48 x 48 whatever the photo's size.
SERVER_EXPLAIN_PIXELS = 1_000_000

BACKENDS = ("auto", "torch", "onnx", "int8")


@dataclass(frozen=True)
class ServeConfig:
    """Everything :func:`wildfer.serve.app.create_app` takes besides a ready recognizer.

    model, detector, backend, device: what the app loads at startup when it is not given a
        recognizer (``backend``: ``auto``, ``torch``, ``onnx`` or ``int8``; ``device``: ``auto``,
        ``cpu``, ``cuda``, ``cuda:N``).
    max_upload_mb: largest accepted photo file (413 beyond).
    timeout: seconds a request may take from its first byte to its answer (408 / 504 beyond).
    cors: origins allowed to call the API from other pages (CORS is off when empty).
    max_pixels: largest decoded image (413 beyond; the decompression-bomb guard).
    max_batch: most photos classified in one batch when requests arrive together.
    max_queue: most requests waiting for the model (503 beyond).
    decode_threads: threads decoding uploads and encoding PNGs.
    torch_threads: torch's (and onnxruntime's) intra-op threads in this process (``None``:
        leave torch as is); cores / (processes x threads) avoids oversubscription.
    threads: inference threads sharing one copy of the model (``None``: one per core; one when
        the detector is not thread-safe).
    work_pixels: photos over this many pixels are downscaled to it before any model work.
    explain_pixels: the same bound for ``/v1/explain``.
    max_predict, max_explain: most requests in progress on ``/v1/predict`` and ``/v1/explain``
        (503 with ``Retry-After`` beyond).
    allowed_hosts: ``Host`` names and addresses the server answers to besides the local ones.
    unsure_below: faces whose likeliest label is less probable than this are flagged ``unsure``
        (``Recognizer(unsure_below=...)``; 0, the default, flags none). Applies to the model the
        app loads, not to a recognizer it is given.
    """

    model: str | None = None
    detector: str = "yunet"
    max_upload_mb: float = field(default=10.0, metadata={"range": (0.0, 4096.0, "above")})
    timeout: float = field(default=10.0, metadata={"range": (0.0, 86400.0, "above")})
    cors: tuple[str, ...] = ()
    max_pixels: int = field(default=SERVER_MAX_PIXELS, metadata={"range": (1, 400_000_000)})
    max_batch: int = field(default=8, metadata={"range": (1, 256)})
    max_queue: int = field(default=64, metadata={"range": (1, 100_000)})
    decode_threads: int = field(default=2, metadata={"range": (1, 256)})
    torch_threads: int | None = field(default=None, metadata={"range": (1, 1024)})
    threads: int | None = field(default=None, metadata={"range": (1, 1024)})
    backend: str = "auto"
    device: str = "auto"
    work_pixels: int = field(default=SERVER_WORK_PIXELS, metadata={"range": (1, 400_000_000)})
    explain_pixels: int = field(default=SERVER_EXPLAIN_PIXELS, metadata={"range": (1, 400_000_000)})
    max_predict: int = field(default=32, metadata={"range": (1, 100_000)})
    max_explain: int = field(default=2, metadata={"range": (1, 10_000)})
    allowed_hosts: tuple[str, ...] = ()
    unsure_below: float = field(default=0.0, metadata={"range": (0.0, 1.0)})

    def __post_init__(self):
        # lists (from JSON or the CLI) are kept as tuples, so a config is hashable and frozen
        for name in ("cors", "allowed_hosts"):
            v = getattr(self, name)
            if v is None:
                object.__setattr__(self, name, ())
            elif isinstance(v, (list, tuple)):
                object.__setattr__(self, name, tuple(v))

    def check(self) -> "ServeConfig":
        """Raise :class:`WildferError` for a value of the wrong type or out of its declared
        range, or an unknown backend; returns the config."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            rng = f.metadata.get("range")
            if rng is None or (v is None and "None" in str(f.type)):
                continue
            lo, hi, *how = rng
            kind = float if isinstance(lo, float) else int
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
                raise WildferError(f"serve setting {f.name}={short(v)}: must be {'a number' if kind is float else 'an integer'}")
            low_ok = v > lo if how == ["above"] else v >= lo
            if not math.isfinite(float(v)) or not low_ok or v > hi:
                bound = f"above {lo:g}" if how == ["above"] else f"at least {lo:g}"
                raise WildferError(f"serve setting {f.name}={short(v)}: must be {bound} and at most {hi:g}")
        if self.backend not in BACKENDS:
            raise WildferError(f"serve setting backend={short(self.backend)}: use {', '.join(BACKENDS)}")
        for name in ("cors", "allowed_hosts"):
            if not all(isinstance(x, str) for x in getattr(self, name)):
                raise WildferError(f"serve setting {name}: must be a list of strings")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able keywords (``ServeConfig(**d)`` gives the config back)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


__all__ = ["ServeConfig", "SERVER_MAX_PIXELS", "SERVER_WORK_PIXELS", "SERVER_EXPLAIN_PIXELS"]
