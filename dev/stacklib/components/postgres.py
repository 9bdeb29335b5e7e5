"""PostgreSQL from Debian, as its own cluster (initdb + `postgres -D`) on a loopback port.

Runs as the dedicated service user when dev/stack runs as root (PostgreSQL refuses root).
`ready` also bootstraps the application role and database, idempotently.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ..component import Component
from ..config import DB_NAME, DB_PASSWORD, DB_USER, PG_SUPERUSER_PASSWORD, V, StackError, log
from ..processes import run, tcp_open
from ..tools import chown_tree, need_binary, reachable_by_others, stack_certificate


class Postgres(Component):
    name = "postgres"
    ports = {"port": 55432}
    start_timeout = 60
    runs_as_service_user = True

    def bindir(self) -> Path:
        major = V["POSTGRES_MAJOR"]
        return Path(need_binary([f"/usr/lib/postgresql/{major}/bin/postgres"], f"postgresql-{major}",
                                "postgres")).parent

    def version(self) -> str:
        path = Path(f"/usr/lib/postgresql/{V['POSTGRES_MAJOR']}/bin/postgres")
        if not path.exists():
            return "not installed"
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
        match = re.search(r"\(PostgreSQL\) (\S+)", out)
        return match.group(1) if match else "unknown"

    def fetch(self) -> None:
        self.bindir()

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def tls(self) -> Path:
        return self.home / "tls"

    def prepare(self) -> None:
        user = self.user()
        if user and not reachable_by_others(self.home):
            raise StackError(f"{self.home} is not reachable by the user {user} that runs PostgreSQL "
                             "(a parent directory lacks o+x). Set STACK_DIR to a directory under /tmp or /srv.")
        self.install_certificate(user)
        if (self.data / "PG_VERSION").exists():
            return
        shutil.rmtree(self.data, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        pwfile = self.home / "superuser.pw"
        pwfile.write_text(PG_SUPERUSER_PASSWORD + "\n")
        chown_tree(self.home, user)
        log(self.name, "initdb")
        run([str(self.bindir() / "initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
             "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
            what="initdb", user=user, log_path=self.log_path)
        pwfile.unlink()

    def install_certificate(self, user: str | None) -> None:
        """The stack's certificate, where the server user owns the key (PostgreSQL refuses a
        key others may read)."""
        _, cert, key = stack_certificate()
        self.tls.mkdir(parents=True, exist_ok=True)
        for source in (cert, key):
            target = self.tls / source.name
            target.write_bytes(source.read_bytes())
            target.chmod(0o600)
        chown_tree(self.tls, user)

    def command(self):
        return ([str(self.bindir() / "postgres"), "-D", str(self.data), "-p", str(self.port()),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                 "-c", "max_connections=300", "-c", "shared_buffers=128MB",
                 # The event store's tests hold a prepared transaction open (it must not stall the log).
                 "-c", "max_prepared_transactions=10",
                 # TLS offered (clients choose: libpq's and sqlx's default `prefer` takes it;
                 # DATABASE_TLS_URL insists and checks the certificate).
                 "-c", "ssl=on", "-c", f"ssl_cert_file={self.tls / 'server.crt'}",
                 "-c", f"ssl_key_file={self.tls / 'server.key'}",
                 # A throw-away development database: durability is traded for speed.
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                {}, self.home)

    def psql(self, url: str, sql: str) -> str:
        return run([str(self.bindir() / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                   what=f"psql {sql!r}", timeout=60).strip()

    def admin_url(self) -> str:
        return f"postgres://postgres:{PG_SUPERUSER_PASSWORD}@127.0.0.1:{self.port()}/postgres"

    def app_url(self) -> str:
        return f"postgres://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.port()}/{DB_NAME}"

    def ready(self) -> bool:
        if not tcp_open(self.port()):
            return False
        # Idempotent bootstrap of the application role and database.
        admin = self.admin_url()
        if self.psql(admin, f"select count(*) from pg_roles where rolname = '{DB_USER}'") == "0":
            self.psql(admin, f"create role {DB_USER} login createdb password '{DB_PASSWORD}'")
        if self.psql(admin, f"select count(*) from pg_database where datname = '{DB_NAME}'") == "0":
            self.psql(admin, f"create database {DB_NAME} owner {DB_USER}")
        return True

    def check(self) -> str:
        got = self.psql(self.app_url(), "select 41 + 1")
        if got != "42":
            raise StackError(f"unexpected query result {got!r}")
        return f"query ok as {DB_USER} on {DB_NAME}"

    def env(self):
        p = self.port()
        ca, _, _ = stack_certificate()
        return {"DATABASE_URL": self.app_url(), "DATABASE_ADMIN_URL": self.admin_url(),
                "DATABASE_TLS_URL": f"{self.app_url()}?sslmode=verify-full&sslrootcert={ca}",
                "STACK_CA_FILE": str(ca),
                "PGHOST": "127.0.0.1", "PGPORT": str(p), "PGUSER": DB_USER,
                "PGPASSWORD": DB_PASSWORD, "PGDATABASE": DB_NAME}

    def stop_gracefully(self, record):
        run([str(self.bindir() / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30"],
            what="pg_ctl stop", user=record.get("user"), timeout=60)
