"""``python -m kemo.cli``: the same as the ``kemo`` command."""

import sys

from kemo.cli import main

sys.exit(main())
