"""The first of two test plugins that register a backend ``dup-cpu`` (see zoo_dup.py)."""

from zoo_dup import DuplicateBackend

plugin = DuplicateBackend("zoo_dup_first", ("dup-cpu",))
zoo_register_backends, zoo_compile, zoo_infer = plugin.zoo_register_backends, plugin.zoo_compile, plugin.zoo_infer
