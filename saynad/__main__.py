"""``python -m saynad`` is the ``saynad`` command."""

from saynad._launch import main

raise SystemExit(main())
