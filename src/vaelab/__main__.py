"""``python -m vaelab`` is the ``vaelab`` command."""

from vaelab.cli.main import main

raise SystemExit(main())
