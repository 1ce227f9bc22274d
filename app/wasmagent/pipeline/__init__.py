"""The three-stage ask pipeline: input -> router -> worker pool -> aggregator -> output."""

from .jobs import Job, Reply, Route
from .pipeline import Pipeline
from .router import Router

__all__ = ["Job", "Pipeline", "Reply", "Route", "Router"]
