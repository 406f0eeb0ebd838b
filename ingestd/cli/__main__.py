"""``python -m ingestd.cli``: the same as the ``ingestd`` command."""

from . import command

command()
