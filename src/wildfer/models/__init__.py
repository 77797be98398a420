"""Model zoo: ``create_model(name, num_classes=7, in_chans=1)``, ``list_models()``.

One module per architecture family; importing this package registers them all.
"""

from . import registry
from .registry import create_model, list_models, model_info, register_model
from . import shallow, vggfer, resnet  # noqa: F401  (registration side effects)

__all__ = ["create_model", "list_models", "model_info", "register_model", "registry"]
