"""The ResNet model plugin (third-party example): ResNet-50 with torchvision's weights and the Ascend AIPP recipe.

A declaration only (``config.py``): the core exports the model from its factory and prepares its input with the
core's ``modelzoo`` preset and the ``aipp`` preset declared in ``config.py``.
"""

from zoo_core.api import declare_models

from .config import MODELS

__version__ = "0.1.0"

zoo_register_models = declare_models(*MODELS)
