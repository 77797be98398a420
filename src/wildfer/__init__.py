"""wildfer: facial expression recognition on wild photos."""

__version__ = "0.1.0"
