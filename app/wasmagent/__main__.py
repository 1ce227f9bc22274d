"""`python -m wasmagent ...`: see `wasmagent.hosts.cli`."""

from .hosts.cli import main

raise SystemExit(main())
