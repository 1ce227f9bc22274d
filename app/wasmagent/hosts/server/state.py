"""What the running server holds: its one core, guards, counters, and how it logs.

Logs are JSON lines on stderr: the core's telemetry events (`stage` with request id and
latency) and one `request` line per finished request (id, client, type, outcome, latency),
plus Python `logging` records in the same shape. Secrets never reach them: tokens are only
hashed, the LLM key lives in the upstream client, telemetry redacts secret-named fields, and
query strings in logged paths (uvicorn's `"WebSocket /v1/ws?token=..." [accepted]` lines: a
client may put a token there although it is refused) are replaced by `?[redacted]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from dataclasses import dataclass
from typing import Any

from ...llm.chat import OpenAIChat
from ...service import Service
from ...telemetry import Telemetry
from .config import ServerConfig
from .security import RateLimiter


@dataclass(slots=True)
class ServerState:
    config: ServerConfig
    service: Service
    telemetry: Telemetry
    limiter: RateLimiter
    llm: OpenAIChat | None = None
    ready: bool = False
    ws_connections: int = 0
    in_flight_requests: int = 0

    def finished(self, request_id: str, kind: str, client: str, outcome: str, ms: float
                 ) -> None:
        """Count and log one request whose terminal event went out."""
        self.telemetry.count("responses", type=kind, outcome=outcome)
        self.telemetry.log("request", request_id=request_id, client=client, type=kind,
                           outcome=outcome, ms=round(ms, 3))

    def metrics(self) -> str:
        """Prometheus text: the core's counters and stage histograms plus server gauges."""
        pipeline = self.service.pipeline
        gauges: dict[str, float] = {
            "wasmagent_in_flight_requests": self.in_flight_requests,
            "wasmagent_in_flight_questions": pipeline.in_flight,
            "wasmagent_queue_depth": pipeline.pool.queued + len(pipeline.inbox),
            "wasmagent_websocket_connections": self.ws_connections,
            "wasmagent_ready": int(self.ready),
            "wasmagent_stalled_stages": len(self.service.watchdog.check()),
            # every task of the event loop (sessions, writers, requests, batcher): a count
            # that does not return to its idle level after clients leave is a leak
            "wasmagent_asyncio_tasks": len(asyncio.all_tasks()),
        }
        if self.llm is not None:
            gauges["wasmagent_upstream_breaker_open"] = int(self.llm.breaker.state == "open")
            gauges["wasmagent_upstream_retries"] = self.llm.retries
        lines = [self.telemetry.prometheus().rstrip("\n")]
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


QUERY_STRING = re.compile(r'(/[^\s"?]*)\?\S+?(?="?(?:\s|$))')
"""A path's query string, as logged by uvicorn (`"WebSocket /v1/ws?token=..."`) or in a URL."""


def redact_query(text: str) -> str:
    """`text` with every path's query string replaced: queries may carry secrets."""
    return QUERY_STRING.sub(r"\1?[redacted]", text) if "?" in text else text


class JsonLines(logging.Formatter):
    """Python log records as the same JSON lines the telemetry writes, query strings
    redacted."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                                "event": "log", "logger": record.name,
                                "message": redact_query(record.getMessage())}
        if record.exc_info:
            line["traceback"] = redact_query(self.formatException(record.exc_info))
        return json.dumps(line, separators=(",", ":"))


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # Python warnings become JSON lines too, not raw stderr text
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def write_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
