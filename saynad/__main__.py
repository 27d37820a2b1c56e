"""``python -m saynad`` is the ``saynad`` command."""

from saynad.cli import main

raise SystemExit(main())
