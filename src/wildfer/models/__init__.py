"""Model zoo: ``create_model(name, num_classes=7, in_chans=1)``, ``list_models()``.

One module per architecture family; importing this package registers them all.
"""

from . import registry
from .registry import create_model, list_models, model_info, register_model
from . import shallow, vggfer, resnet  # noqa: F401  (registration side effects)
from . import alexnet, vgg16, inception, inception_resnet, mini_xception, fastfer  # noqa: F401
from .pretrained import freeze, load_torchvision_weights

__all__ = ["create_model", "list_models", "model_info", "register_model", "registry", "freeze",
           "load_torchvision_weights"]
