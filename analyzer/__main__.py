"""``python -m analyzer`` is the ``canary-analyzer`` command."""

from analyzer.cli import main

raise SystemExit(main())
