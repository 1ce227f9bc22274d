"""`python -m wasmagent ...`: see `wasmagent.cli`."""

from .cli import main

raise SystemExit(main())
