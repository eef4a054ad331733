"""``python -m kemo``: the same as the ``kemo`` command."""

from kemo.cli import main

raise SystemExit(main())
