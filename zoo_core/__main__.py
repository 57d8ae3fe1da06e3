"""``python -m zoo_core``: the same as the ``zoo`` command."""

from .cli import main

main()
