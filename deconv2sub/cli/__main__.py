"""``python -m deconv2sub.cli``: the ``deconv2sub`` command."""

from . import main

if __name__ == "__main__":  # imported (e.g. by a test that imports every module): no run
    main()
