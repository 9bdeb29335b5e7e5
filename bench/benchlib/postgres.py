"""A private, durable PostgreSQL cluster for one benchmark run.

initdb in a temp dir, `postgres` on a free loopback port with no Unix socket, **default settings**
(fsync=on, synchronous_commit=on, full_page_writes=on) except `listen_addresses`, the port, and
`max_connections` raised to fit the widest pgbench plus the server's pool. The Debian binaries are
found as dev/stack finds them (/usr/lib/postgresql/<POSTGRES_MAJOR>/bin); as root, the cluster
runs as dev/stack's service user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dev"))
from stacklib.tools import chown_tree, service_user  # noqa: E402


def major() -> str:
    for line in (ROOT / "dev/stack.d/versions.env").read_text().splitlines():
        if line.startswith("POSTGRES_MAJOR="):
            return line.split("=", 1)[1].strip()
    return "15"


def bindir() -> Path:
    path = Path(os.environ.get("BENCH_PG_BINDIR", f"/usr/lib/postgresql/{major()}/bin"))
    if not (path / "postgres").exists():
        raise SystemExit(f"bench/run: PostgreSQL not found in {path} "
                         f"(apt-get install postgresql-{major()}, or set BENCH_PG_BINDIR)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Start with `start()`, stop with `stop()` (idempotent; the data dir goes with it)."""

    def __init__(self, work: Path, max_connections: int):
        self.home = work / "pg"
        self.data = self.home / "data"
        self.bin = bindir()
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.max_connections = max_connections
        self.proc: subprocess.Popen | None = None
        self.user = service_user()

    def _as_user(self) -> dict:
        if not self.user:
            return {}
        import pwd
        pw = pwd.getpwnam(self.user)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self) -> None:
        self.home.mkdir(parents=True)
        os.chmod(self.home.parent, 0o755)
        pwfile = self.home / "pw"
        pwfile.write_text(self.password + "\n")
        chown_tree(self.home, self.user)
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--pwfile", str(pwfile), "--auth=scram-sha-256", "-E", "UTF8",
                        "--locale=C.UTF-8"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, **self._as_user())
        pwfile.unlink()
        log = open(self.home / "postgres.log", "w")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", f"max_connections={self.max_connections}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self._as_user())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench/run: postgres exited; see {self.home}/postgres.log")
            try:
                self.psql("postgres", "SELECT 1")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        raise SystemExit("bench/run: postgres did not accept connections within 60 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, db: str) -> str:
        return f"postgres://postgres:{self.password}@127.0.0.1:{self.port}/{db}"

    def env(self) -> dict:
        return {**os.environ, "PGPASSWORD": self.password, "PGHOST": "127.0.0.1",
                "PGPORT": str(self.port), "PGUSER": "postgres"}

    def psql(self, db: str, sql: str) -> str:
        out = subprocess.run([str(self.bin / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                              "-d", db, "-c", sql], env=self.env(), check=True,
                             capture_output=True, text=True)
        return out.stdout.strip()

    def settings(self) -> dict:
        rows = self.psql("postgres", "SELECT name, setting FROM pg_settings WHERE name IN "
                         "('fsync','synchronous_commit','full_page_writes','wal_sync_method',"
                         "'server_version','shared_buffers','max_connections') ORDER BY name")
        return dict(line.split("|", 1) for line in rows.splitlines())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: fast shutdown (disconnects clients, checkpoints)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.home, ignore_errors=True)
