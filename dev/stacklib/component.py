"""The supervisor shared by every server: Component.

A subclass says how to fetch, configure, start, probe and check one server; this base
class does the rest the same way for all of them: ports chosen and recorded, the process
started in its own session with our mark (MARK_VAR) in its environment, start-up awaited,
and stopping only what is provably ours (recorded pid + start time + mark).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import subprocess
import time
from pathlib import Path

from .config import MARK_VAR, STACK_DIR, StackError, log
from .processes import (kill_group, marked_processes, pick_port, proc_read, proc_starttime, proc_stat,
                        rss_kib, session_members, tcp_open)
from .state import State
from .tools import reachable_by_others, service_user


class Component:
    """One server. Subclasses fill in fetch / prepare / command / ready / check / env."""

    name = ""
    ports: dict[str, int] = {}     # role -> preferred port
    start_timeout = 120.0
    runs_as_service_user = False

    # -- paths ------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        path = STACK_DIR / self.name
        if self.runs_as_service_user and os.geteuid() == 0 and not reachable_by_others(STACK_DIR):
            # The dedicated user cannot reach STACK_DIR (e.g. a clone under /root): keep this
            # component's files in /var/tmp and leave a symlink in STACK_DIR for humans.
            tag = hashlib.sha1(str(STACK_DIR).encode()).hexdigest()[:10]
            real = Path("/var/tmp") / f"order-platform-stack-{tag}" / self.name
            real.mkdir(parents=True, exist_ok=True)
            real.parent.chmod(0o755)
            if not path.is_symlink() and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.symlink_to(real)
            return real
        return path

    @property
    def log_path(self) -> Path:
        return STACK_DIR / "logs" / f"{self.name}.log"

    def port(self, role: str = "port") -> int:
        return State.get(self.name).get("ports", {}).get(role, 0)

    # -- hooks (overridden) -------------------------------------------------------------
    def version(self) -> str:
        raise NotImplementedError

    def fetch(self) -> None:
        """Make the software available (download/unpack into the cache, apt-get)."""

    def prepare(self) -> None:
        """Write config and initialise the data dir (ports are already chosen)."""

    def command(self) -> tuple[list[str], dict, Path]:
        """argv, extra environment, working directory."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Cheap probe used while waiting for start-up."""
        return tcp_open(self.port())

    def check(self) -> str:
        """Prove the component is usable; return a short summary or raise StackError."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def stop_gracefully(self, record: dict) -> None:
        """Component-specific stop before signals (postgres: pg_ctl stop)."""

    def cmdline_mark(self) -> bytes | None:
        """Only for servers that overwrite their environment (see marked_processes)."""
        return None

    # -- process management ----------------------------------------------------------
    def record(self) -> dict:
        return State.get(self.name)

    def is_ours(self, record: dict) -> bool:
        """The recorded pid is alive and still the process we started (not a reused pid)."""
        pid = record.get("pid")
        if not pid:
            return False
        fields = proc_stat(pid)
        if not fields or fields[0] == "Z" or proc_starttime(pid) != record.get("starttime"):
            return False
        mark = f"{MARK_VAR}={STACK_DIR}:{self.name}".encode()
        cmdline = proc_read(pid, "cmdline")
        return (mark in proc_read(pid, "environ").split(b"\0") or str(STACK_DIR).encode() in cmdline)

    def running(self) -> bool:
        return self.is_ours(self.record())

    def user(self) -> str | None:
        return service_user() if self.runs_as_service_user else None

    def choose_ports(self) -> None:
        recorded = self.record().get("ports", {})
        chosen = {role: pick_port([recorded.get(role, 0), default]) for role, default in self.ports.items()}
        State.update(self.name, ports=chosen)

    def start(self) -> None:
        self.choose_ports()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv, extra_env, cwd = self.command()
        env = dict(os.environ)
        env.update(extra_env)
        env[MARK_VAR] = f"{STACK_DIR}:{self.name}"
        kwargs = {}
        user = self.user()
        if user:
            pw = pwd.getpwnam(user)
            kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
            env.update(HOME=str(self.home), USER=user, LOGNAME=user)
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    env=env, cwd=cwd, start_new_session=True, **kwargs)
        State.update(self.name, pid=proc.pid, starttime=proc_starttime(proc.pid),
                     version=self.version(), started=time.time(), user=user)
        self._popen = proc
        ports = ", ".join(f"{role} {port}" for role, port in State.get(self.name)["ports"].items())
        log(self.name, f"started pid {proc.pid} ({ports}); log: {self.log_path}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            popen = getattr(self, "_popen", None)
            if popen is not None and popen.poll() is not None:
                raise StackError(f"process exited with code {popen.returncode} during start-up")
            if popen is None and not self.running():
                raise StackError("process is no longer running")
            try:
                if self.ready():
                    return
            except (OSError, StackError, ValueError):
                pass
            time.sleep(0.5)
        raise StackError(f"not ready after {timeout:.0f}s")

    def stop(self) -> str:
        record = self.record()
        pid = record.get("pid")
        if pid and self.is_ours(record):
            with contextlib.suppress(StackError):
                self.stop_gracefully(record)
            kill_group(pid)
            result = f"stopped (pid {pid})"
        elif pid and (proc_stat(pid) or ["Z"])[0] != "Z":
            result = f"pid {pid} is alive but is not ours any more; left alone"
        elif pid:
            result = "was not running (stale pid cleaned up)"
        else:
            result = "not running"
        # Leftovers after a crash (the leader died, its children lived on): found by mark.
        leftovers = marked_processes(self.name, self.cmdline_mark())
        for other in leftovers:
            kill_group(other, group=False)
        if leftovers:
            result += f"; killed {len(leftovers)} leftover process(es)"
        State.update(self.name, pid=None, starttime=None, started=None)
        return result

    def memory_kib(self) -> int:
        record = self.record()
        pids = set(marked_processes(self.name, self.cmdline_mark()))
        if self.is_ours(record):
            pids.update(session_members(record["pid"]))
            pids.add(record["pid"])
        return sum(rss_kib(p) for p in pids)
