#!/usr/bin/env python3
"""Sample the total resident memory of one dev/stack until a stop file appears.

    python3 dev/stack.d/peak_rss.py STACK_DIR STOP_FILE &
    time dev/stack up && dev/stack check; touch STOP_FILE

Counts every process carrying the stack's mark (ORDER_PLATFORM_STACK_DIR=<STACK_DIR>:<component>,
set by dev/stack on everything it starts) plus PostgreSQL's children and Redis (which
overwrite their environment with a process title and are recognised by their session or
by the config path in their title). Prints the peak sum of VmRSS and its split.
This is how the numbers in dev/README.md were measured.
"""
import json
import os
import sys
import time

stack_dir, stop_file = sys.argv[1], sys.argv[2]
mark = f"ORDER_PLATFORM_STACK_DIR={os.path.abspath(stack_dir)}:".encode()


def read(pid, what):
    try:
        with open(f"/proc/{pid}/{what}", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def sample():
    by_session, totals = {}, {}
    procs = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in procs:    # leaders (and any marked process) first
        for var in read(pid, "environ").split(b"\0"):
            if var.startswith(mark):
                stat = read(pid, "stat").decode(errors="replace")
                by_session[stat[stat.rindex(")") + 2:].split()[3]] = var[len(mark):].decode()
                break
    redis_conf = os.path.join(os.path.abspath(stack_dir), "redis", "redis.conf").encode()
    for pid in procs:
        stat = read(pid, "stat").decode(errors="replace")
        if not stat:
            continue
        session = stat[stat.rindex(")") + 2:].split()[3]
        component = by_session.get(session) or ("redis" if redis_conf in read(pid, "cmdline") else None)
        if component:
            rss = next((int(line.split()[1]) for line in read(pid, "status").decode().splitlines()
                        if line.startswith("VmRSS:")), 0)
            totals[component] = totals.get(component, 0) + rss
    return totals


peak, split = 0, {}
while not os.path.exists(stop_file):
    totals = sample()
    if sum(totals.values()) > peak:
        peak, split = sum(totals.values()), totals
    time.sleep(0.5)
print(f"peak RSS {peak // 1024} MiB: " + json.dumps({k: f"{v // 1024} MiB" for k, v in sorted(split.items())}))
