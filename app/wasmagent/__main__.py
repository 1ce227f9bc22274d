"""`python -m wasmagent ...`: see `wasmagent.hosts.cli`."""

from .hosts.cli import run

run()
