"""The agent server's configuration: where it listens, its store, its LLM and its limits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ...llm.chat import ChatConfig
from ...tenancy import check_tenant
from .security import OriginPolicy, TokenBook

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
LLM_KEY_ENV = "WASMAGENT_LLM_KEY"
DATABASE_ENV = "WASMAGENT_DATABASE_URL"
DEFAULT_DATABASE = "wasmagent-server.sqlite"


@dataclass(slots=True)
class ServerConfig:
    """Everything `create_app` needs. Secrets (the LLM key) come from the environment only, so
    they never show in `ps` or shell history."""

    host: str = "127.0.0.1"
    port: int = 8080
    store: Path | str = DEFAULT_DATABASE
    """The database: a URL (`postgresql://...`, `sqlite:///PATH`) or a SQLite file path. It may
    hold a password: log it only through `hosts.sql.redact_url`."""
    tokens: TokenBook = field(default_factory=TokenBook)
    origins: OriginPolicy = field(default_factory=OriginPolicy)
    llm: ChatConfig | None = None
    llm_breaker_threshold: int = 5
    llm_breaker_reset_s: float = 30.0
    rate: float = 20.0
    burst: int = 40
    max_message_bytes: int = 1 << 20
    max_document_bytes: int = 2 << 20
    request_timeout_s: float = 60.0
    pool_size: int = 1024
    max_in_flight: int = 4096
    max_queued_events: int = 10_000
    threads: int = 0
    insecure_no_auth: bool = False
    job_lease_s: float = 10.0
    """How long a durable job stays with a process that stopped renewing it (crashed) before
    another process (or this one, restarted) takes it over."""
    loop: str = "auto"
    grpc_port: int | None = None
    """Serve gRPC (`server/grpc_api/`) on this port too, same host, process and event loop;
    None: off."""
    shared_kbs: frozenset[str] = frozenset()
    """With tokens, every client is a tenant with its own knowledge bases, history and jobs;
    these knowledge bases are the operator's, readable by every client, changed by none."""

    def check(self) -> None:
        """Refuse an unsafe set-up: no tokens on a non-loopback address needs an explicit flag;
        a token's client name must be able to name a tenant (`tenancy.check_tenant`)."""
        if self.host not in LOOPBACK and not self.tokens.enabled and not self.insecure_no_auth:
            raise SystemExit(
                f"refusing to serve {self.host} without authentication: pass --tokens FILE "
                "(see `python -m wasmagent token`) or --insecure-no-auth")
        for client in self.tokens.clients.values():
            try:
                check_tenant(client)
            except ValueError as exc:
                raise SystemExit(f"the tokens file names a bad client: {exc}") from None

    def tenant(self, client: str) -> str | None:
        """Whose data a client's requests reach: with tokens, its own (the token's name);
        without, everyone shares one namespace (the client name is only an address)."""
        return client if self.tokens.enabled else None


def database_url(flag: str | None) -> str:
    """The database to use: the `--database` flag, else `WASMAGENT_DATABASE_URL` (where a URL
    with a password belongs: the environment does not show in `ps`), else the default file."""
    return flag or os.environ.get(DATABASE_ENV) or DEFAULT_DATABASE


def llm_from_env(url: str | None, model: str | None, timeout_s: float) -> ChatConfig | None:
    if not url:
        return None
    if not model:
        raise SystemExit("--llm-url needs --llm-model")
    return ChatConfig(url, model, api_key=os.environ.get(LLM_KEY_ENV) or None,
                      timeout_s=timeout_s)
