"""Ports, processes and helper commands.

Loopback port choice (a taken port is skipped, never fought over), reading /proc to
recognise our own processes (start time, the MARK_VAR in their environment), running
short helper commands with their output kept for the error message, and stopping a
process group (SIGTERM, then SIGKILL). Nothing here ever looks for a process by name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .config import MARK_VAR, STACK_DIR, StackError


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    # Something bound to 0.0.0.0 or ::1 with SO_REUSEADDR may still answer on loopback.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


_taken_ports: set[int] = set()
_ports_lock = threading.Lock()


def pick_port(preferred: list[int]) -> int:
    """First free port among the preferred ones, then the next free ones after the
    first preference. A taken port is skipped, never fought over."""
    with _ports_lock:
        candidates = [p for p in preferred if p] + list(range(preferred[-1] + 1, preferred[-1] + 200))
        for port in candidates:
            if port not in _taken_ports and port_is_free(port):
                _taken_ports.add(port)
                return port
    raise StackError(f"no free loopback port near {preferred[-1]}")


def tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def proc_starttime(pid: int) -> str | None:
    fields = proc_stat(pid)
    return fields[19] if fields else None


def proc_read(pid: int, what: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes()
    except OSError:
        return b""


def marked_processes(component: str, cmdline_mark: bytes | None = None) -> list[int]:
    """Pids of live processes of one component carrying our mark in their environment
    (or, for servers that overwrite their environment with a process title, a
    cmdline_mark that only our own invocation contains)."""
    want = f"{MARK_VAR}={STACK_DIR}:{component}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        fields = proc_stat(int(entry))
        if not fields or fields[0] == "Z":
            continue
        if want in proc_read(int(entry), "environ").split(b"\0") or (
                cmdline_mark and cmdline_mark in proc_read(int(entry), "cmdline")):
            found.append(int(entry))
    return found


def session_members(leader: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields and fields[0] != "Z" and fields[3] == str(leader):
                members.append(int(entry))
    return members


def rss_kib(pid: int) -> int:
    for line in proc_read(pid, "status").decode(errors="replace").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(cmd: list[str], *, what: str, user: str | None = None, env: dict | None = None,
        cwd: Path | None = None, timeout: float = 600, log_path: Path | None = None) -> str:
    """Run a short helper command; on failure raise StackError with its output."""
    kwargs = {}
    if user:
        kwargs.update(user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[])
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                              timeout=timeout, **kwargs)
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {exc.filename} not found") from None
    except subprocess.TimeoutExpired:
        raise StackError(f"{what}: timed out after {timeout:.0f}s") from None
    if log_path:
        with open(log_path, "a") as handle:
            handle.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise StackError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def kill_group(pid: int, group: bool = True, grace: float = 30.0) -> None:
    """SIGTERM the process group (or the pid), wait, then SIGKILL."""
    def send(sig):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def alive():
        if group:
            return bool(session_members(pid)) or bool(proc_stat(pid) and proc_stat(pid)[0] != "Z")
        fields = proc_stat(pid)
        return bool(fields and fields[0] != "Z")

    send(signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and alive():
        time.sleep(0.2)
    if alive():
        send(signal.SIGKILL)
        if group:
            for member in session_members(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(member, signal.SIGKILL)
        time.sleep(0.5)
