"""The ResNeSt model plugin: ResNeSt-50/101/200/269 with the Ascend ModelZoo recipe's settings.

A declaration only (``config.py``): the core exports the models from their factory and prepares their input with
the core's ``modelzoo`` and ``reference`` presets.
"""

from zoo_core.api import declare_models

from .config import MODELS

__version__ = "0.2.0"

zoo_register_models = declare_models(*MODELS)
