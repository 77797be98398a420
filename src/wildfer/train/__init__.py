"""Training: ``Trainer(TrainConfig(...)).fit()``; ``wildfer train --config FILE``."""

from .config import TrainConfig, load_config
from .engine import Trainer

__all__ = ["TrainConfig", "Trainer", "load_config"]
