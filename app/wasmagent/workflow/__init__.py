"""Durable workflows: multi-step jobs journaled through the `Store`, retried, resumable."""

from .engine import Workflows
from .journal import JobRecord, JobStatus
from .run import JobStopped, Run, Tx, retryable

__all__ = ["JobRecord", "JobStatus", "JobStopped", "Run", "Tx", "Workflows", "retryable"]
