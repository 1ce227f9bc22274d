"""Real processes on free loopback ports, for the server tests, the browser e2e and the load
benchmark: the fake OpenAI-compatible upstream (`fake_openai.py`, controllable through
`POST /control`) and the agent server (`python -m wasmagent server ...`) pointed at it, with the
LLM key in its environment and its stderr (the JSON log lines) captured to a file.

Every start waits for readiness with a bounded timeout; `Proc.stop` terminates, then kills.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_openai.py"
# Safety nets, generous for a loaded machine: a server boot loads the ONNX model (about 2 s
# quiet); a call to a control or health endpoint takes milliseconds quiet.
BOOT_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LLM_KEY = "sk-test-" + secrets.token_hex(12)
"""A fresh LLM key per run, so 'the key is not in the logs' cannot pass by accident."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    """A child process with its output in files."""

    name: str
    popen: subprocess.Popen[bytes]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, grace: float = STOP_TIMEOUT_S) -> None:
        """Terminate; kill if it has not exited after `grace` seconds."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT_S)


def spawn_on_free_port(start: Callable[[int], Proc]) -> tuple[Proc, int]:
    """`start(port)` on a free port, again on another if something took that one first."""
    for attempt in range(3):
        port = free_port()
        try:
            return start(port), port
        except RuntimeError as exc:
            if "address already in use" not in str(exc).lower() or attempt == 2:
                raise
    raise AssertionError("unreachable")


def spawn(name: str, args: Sequence[str], log_dir: Path, ready_url: str,
          env: dict[str, str] | None = None) -> Proc:
    """Start `args`; return once `ready_url` answers 200, or fail with the process's stderr."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"{name}.stderr"
    with (log_dir / f"{name}.stdout").open("wb") as out, stderr_path.open("wb") as err:
        popen = subprocess.Popen(args, stdout=out, stderr=err, cwd=ROOT,
                                 env={**os.environ, **(env or {})})
    proc = Proc(name, popen, stderr_path)
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    try:
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {popen.returncode}:\n{proc.stderr()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=CALL_TIMEOUT_S).status_code == 200:
                    return proc
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {BOOT_TIMEOUT_S} s:\n{proc.stderr()}")
            time.sleep(0.1)
    except BaseException:
        proc.stop()
        raise


@dataclass
class FakeUpstream:
    """The fake LLM upstream and its control endpoint."""

    proc: Proc
    port: int

    def stop(self) -> None:
        self.proc.stop(grace=3.0)  # a `hang` request never finishes: don't wait for it long

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def control(self, script: Sequence[str] = (), delay: float = 0.0) -> None:
        """Queue one behaviour per coming request (`ok`, `fail503`, `drop`, `hang`...)."""
        httpx.post(f"http://127.0.0.1:{self.port}/control",
                   json={"script": list(script), "delay": delay}, timeout=CALL_TIMEOUT_S
                   ).raise_for_status()

    def requests(self) -> int:
        """How many chat requests the upstream has received so far."""
        body = httpx.get(f"http://127.0.0.1:{self.port}/control", timeout=CALL_TIMEOUT_S).json()
        return int(body["requests"])


def start_fake(log_dir: Path, key: str | None = LLM_KEY) -> FakeUpstream:
    def start(port: int) -> Proc:
        args = [sys.executable, str(FAKE), "--port", str(port)] + (["--key", key] if key else [])
        return spawn(f"fake-{port}", args, log_dir, f"http://127.0.0.1:{port}/control")

    return FakeUpstream(*spawn_on_free_port(start))


@dataclass
class Server:
    """A running agent server."""

    proc: Proc
    port: int
    fake: FakeUpstream | None
    tokens: dict[str, str] = field(default_factory=dict)
    tokens_file: Path | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def log(self) -> list[dict[str, Any]]:
        """The server's stderr, one JSON object per line (a non-JSON line fails the test)."""
        lines = [line for line in self.proc.stderr().splitlines() if line.strip()]
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"a server log line is not JSON: {line!r}")
        return out

    def metrics(self) -> str:
        return httpx.get(f"{self.http}/metrics", timeout=CALL_TIMEOUT_S).text

    def readyz(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.http}/readyz", timeout=CALL_TIMEOUT_S).json()
        return body


def start_server(log_dir: Path, fake: FakeUpstream | None, *extra: str,
                 key: str | None = LLM_KEY, port: int | None = None,
                 database: str | None = None) -> Server:
    """A server on a free port, or on `port` (a restart where clients expect it). Its store is
    a fresh SQLite file, or `database` (a URL, passed as WASMAGENT_DATABASE_URL)."""

    def start(port: int) -> Proc:
        args = [sys.executable, "-m", "wasmagent", "server", "--port", str(port)]
        if database is None:
            args += ["--store", str(log_dir / f"server-{port}.sqlite")]
        if fake is not None:
            args += ["--llm-url", fake.base_url, "--llm-model", "fake"]
        env = {"WASMAGENT_LLM_KEY": key or "", "PYTHONUNBUFFERED": "1",
               "WASMAGENT_DATABASE_URL": database or ""}
        return spawn(f"server-{port}", [*args, *extra], log_dir,
                     f"http://127.0.0.1:{port}/readyz", env)

    if port is not None:
        return Server(start(port), port, fake)
    return Server(*spawn_on_free_port(start), fake)


def make_token(name: str, tokens_file: Path) -> str:
    """`python -m wasmagent token NAME --tokens FILE`; returns the printed token."""
    done = subprocess.run([sys.executable, "-m", "wasmagent", "token", name, "--tokens",
                           str(tokens_file)], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def token_server(log_dir: Path, names: Sequence[str], *args: str, upstream: bool = True
                 ) -> Iterator[Server]:
    """A server run with `--tokens` (one token per name, in `srv.tokens`) and `args`, with its
    own fake upstream unless `upstream=False`; both stopped on exit."""
    tokens_file = log_dir / "tokens.txt"
    tokens = {name: make_token(name, tokens_file) for name in names}
    fake = start_fake(log_dir) if upstream else None
    try:
        srv = start_server(log_dir, fake, "--tokens", str(tokens_file), *args)
        srv.tokens, srv.tokens_file = tokens, tokens_file
        try:
            yield srv
        finally:
            srv.proc.stop()
    finally:
        if fake is not None:
            fake.stop()


def bearer_headers(srv: Server, who: str = "alice") -> dict[str, str]:
    """The HTTP headers of `who`'s token on a `token_server`."""
    return {"Authorization": f"Bearer {srv.tokens[who]}"}


def imported_by_ask(kb: Path, question: str) -> tuple[set[str], str]:
    """The modules one `python -m wasmagent ask` process imports (its `-X importtime` lines),
    and the end of its stderr to show when an assertion on them fails."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wasmagent", "ask", "--kb", str(kb),
         "--json", question],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False)
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    return imported, proc.stderr[-2000:]
