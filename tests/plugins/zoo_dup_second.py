"""The second of two test plugins that register a backend ``dup-cpu``, and one named like the built-in
``onnxruntime`` (see zoo_dup.py)."""

from zoo_dup import DuplicateBackend

plugin = DuplicateBackend("zoo_dup_second", ("dup-cpu", "onnxruntime"))
zoo_register_backends, zoo_compile, zoo_infer = plugin.zoo_register_backends, plugin.zoo_compile, plugin.zoo_infer
