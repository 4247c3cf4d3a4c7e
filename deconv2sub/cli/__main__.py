"""``python -m deconv2sub.cli``: the ``deconv2sub`` command."""

from . import main

main()
