"""CPU time of processes from /proc/<pid>/stat, in seconds (user + system).

A database is a process tree: the PostgreSQL postmaster and its backends. A backend that exits is
reaped by the postmaster, and the kernel adds its CPU time to the postmaster's cutime/cstime; so
"postmaster (self + reaped children) + every live child (self)" only ever grows, and its difference
between two samples is the cluster's CPU over that interval, whether backends come or go in it.
"""

from __future__ import annotations

import os

TICK = os.sysconf("SC_CLK_TCK")


def _fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2:].split()


def own_seconds(pid: int) -> float:
    """utime + stime of one process (0 when it has gone)."""
    f = _fields(pid)
    if f is None:
        return 0.0
    return (int(f[11]) + int(f[12])) / TICK


def tree_seconds(root: int) -> float:
    """The root's own and reaped children's time, plus its live children's own time."""
    f = _fields(root)
    if f is None:
        return 0.0
    total = sum(int(x) for x in f[11:15]) / TICK
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        child = _fields(int(name))
        if child is not None and int(child[1]) == root:
            total += (int(child[11]) + int(child[12])) / TICK
    return total


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])
