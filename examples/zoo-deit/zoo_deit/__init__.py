"""The DeiT model plugin (third-party example): DeiT-Tiny declared as data; the core exports and prepares it."""

from zoo_core.api import declare_models

from .config import MODELS

__version__ = "0.1.0"

zoo_register_models = declare_models(*MODELS)
