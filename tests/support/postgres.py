"""A throwaway PostgreSQL cluster for tests: Debian's binaries (`./build.sh test` installs the
`postgresql` package), a fresh data directory in a temp dir, a free port on 127.0.0.1 and the
socket in that temp dir, trust authentication for loopback only, `fsync=off` (nothing here has
to survive a power cut). `new_database()` hands each test a database of its own.

initdb and postgres refuse to run as root. As root (the case on the project's machines) they
run as Debian's `postgres` system user, and the temp dir belongs to that user; `stop` asks
for a fast shutdown, then kills, and removes the temp dir.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .processes import free_port

START_TIMEOUT_S = 120.0  # a safety net: a start takes about a second quiet
STOP_TIMEOUT_S = 10.0
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine, or the cluster would not start."""


def find_bin_dir() -> Path:
    """The newest `/usr/lib/postgresql/*/bin` that has initdb."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run "
            "`./build.sh test`, which installs Debian's postgresql package, or "
            "`apt-get install postgresql`")
    return Path(found[-1]).parent


def _as_owner() -> dict[str, Any]:
    """Popen arguments that run a server binary as `postgres` when we are root. Popen switches
    user in the child itself, so the postmaster is our direct child and gets our signals
    (runuser would sit in between, and after SIGTERM it SIGKILLs its child within seconds)."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(f"running as root, and there is no {SYSTEM_USER!r} system "
                                  "user to run PostgreSQL as (Debian's package creates it)"
                                  ) from None
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": user.pw_dir, "USER": SYSTEM_USER}}


@dataclass
class PostgresCluster:
    """A running cluster; `url` reaches its `postgres` database as the superuser."""

    bin_dir: Path
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = SUPERUSER if password is None else f"{SUPERUSER}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self, password: str | None = None) -> str:
        """A fresh, empty database; its URL (with `password` in it, which trust
        authentication ignores: for tests that prove a password never shows)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name, password)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql over the socket; its output (unaligned, tuples only)."""
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, "-d", database,
             "-c", sql], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed on {sql!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back sessions, exit); SIGKILL if that hangs; then
        remove the temp dir."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT_S)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(attempts: int = 3) -> PostgresCluster:
    """initdb and start a cluster on a free loopback port (another port if one was taken)."""
    bin_dir = find_bin_dir()
    owner = _as_owner()
    root = Path(tempfile.mkdtemp(prefix="wasmagent-pg-"))
    try:
        if owner:
            os.chown(root, owner["user"], owner["group"])
        _initdb(bin_dir, root / "data", owner)
        for attempt in range(attempts):
            try:
                return _start(bin_dir, root, owner)
            except PostgresUnavailable as exc:
                if "already in use" not in str(exc) or attempt == attempts - 1:
                    raise
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    raise AssertionError("unreachable")


def _initdb(bin_dir: Path, data: Path, owner: dict[str, Any]) -> None:
    done = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"],
        capture_output=True, text=True, timeout=120, check=False, cwd=data.parent, **owner)
    if done.returncode != 0:
        raise PostgresUnavailable(f"initdb failed ({done.returncode}): {done.stderr.strip()}")
    # Loopback only, trust: throwaway test data, reachable from this machine alone.
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8")


def _start(bin_dir: Path, root: Path, owner: dict[str, Any]) -> PostgresCluster:
    port = free_port()
    settings = {"listen_addresses": "127.0.0.1", "port": str(port),
                "unix_socket_directories": str(root), "fsync": "off",
                "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "100"}
    args: Sequence[str] = [str(bin_dir / "postgres"), "-D", str(root / "data"),
                           *itertools.chain.from_iterable(("-c", f"{k}={v}")
                                                          for k, v in settings.items())]
    with (root / "postgres.log").open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root, **owner)
    cluster = PostgresCluster(bin_dir, root, port, proc)
    try:
        _wait_ready(cluster)
    except BaseException:
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        raise
    return cluster


def _wait_ready(cluster: PostgresCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if cluster.proc.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited with {cluster.proc.returncode}:\n{cluster.log()}")
        ready = subprocess.run(
            [str(cluster.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1",
             "-p", str(cluster.port), "-U", SUPERUSER, "-t", "1"], check=False, timeout=10)
        if ready.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise PostgresUnavailable(
                f"postgres not accepting connections after {START_TIMEOUT_S} s:\n"
                f"{cluster.log()}")
        time.sleep(0.05)
