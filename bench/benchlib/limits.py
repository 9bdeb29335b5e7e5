"""What each database allows for the platform's write: one row of the real `events` shape per
commit, into a store created by `order-platform migrate` (same table, indexes and triggers,
including PostgreSQL's statement-level append-lock trigger), with a realistic OrderCreated payload.

PostgreSQL: pgbench, prepared statements, `-c N` clients, per-transaction log for percentiles.
SQLite: Python's sqlite3 on the same file layout (WAL, synchronous=FULL, as the platform opens
it), N threads with a connection each, queued on one in-process lock: SQLite has one writer, so
more threads only queue.
"""

from __future__ import annotations

import math
import re
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

from . import procstat

# One OrderCreated as the platform stores it (see a row of `events`): a one-line order.
PGBENCH_SCRIPT = r"""\set n random(1, 1000000000)
INSERT INTO events (event_id, stream_id, version, event_type, schema_version, data, occurred_at,
  actor, correlation_id, causation_id, traceparent, idempotency_key)
VALUES (gen_random_uuid(), gen_random_uuid(), 1, 'OrderCreated', 1,
  jsonb_build_object('lines', jsonb_build_array(jsonb_build_object('sku', 'LG-0-' || :n,
    'quantity', 1, 'unitPrice', 999, 'productName', 'Load item LG-0-' || :n)),
    'orderId', gen_random_uuid(), 'currency', 'USD', 'customerId', 'loadgen-bench-w' || :n),
  now(), 'bench-loadgen', gen_random_uuid()::text, gen_random_uuid(), NULL, NULL);
"""


def percentiles(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"p50": None, "p95": None, "p99": None}

    def rank(p: float) -> float:
        return values[max(1, math.ceil(p / 100 * len(values))) - 1]

    return {"p50": round(rank(50), 3), "p95": round(rank(95), 3), "p99": round(rank(99), 3)}


def pgbench(cluster, db: str, clients: int, seconds: float, work: Path) -> dict:
    """Rows (= commits) per second of the script at `clients`, with the cluster's CPU."""
    script = work / "one_row_per_commit.sql"
    script.write_text(PGBENCH_SCRIPT)
    logdir = work / f"pgbench-{clients}"
    logdir.mkdir(exist_ok=True)
    threads = 1 if clients == 1 else 2
    db_before = procstat.tree_seconds(cluster.pid)
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(cluster.bin / "pgbench"), "-n", "-M", "prepared", "-f", str(script),
         "-c", str(clients), "-j", str(threads), "-T", str(max(1, round(seconds))),
         "-l", "--log-prefix", str(logdir / "tx"), db],
        env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=logdir)
    out, err = proc.communicate()
    wall = time.monotonic() - started
    client_cpu = None
    if proc.returncode != 0:
        raise SystemExit(f"bench/run: pgbench failed:\n{err[-2000:]}")
    db_cpu = procstat.tree_seconds(cluster.pid) - db_before
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
    processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    latencies = []
    for log in logdir.glob("tx*"):
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                latencies.append(int(parts[2]) / 1000.0)  # µs -> ms
        log.unlink()
    return {"clients": clients, "rowsPerSecond": round(tps, 1), "transactions": processed,
            "latencyMs": percentiles(latencies), "wallSeconds": round(wall, 2),
            "dbCpuSecondsPer1000": round(db_cpu / max(processed, 1) * 1000, 3),
            "clientCpu": client_cpu}


def sqlite_limit(db_path: Path, clients: int, seconds: float) -> dict:
    """Rows (= commits) per second into `events` of a migrated events.db, one row per commit."""
    stop_at = time.monotonic() + seconds
    counts = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    # One writer at a time, queued in-process as the platform's own write gate does, instead of
    # SQLite's busy handler (which sleeps and backs off, and would understate the limit).
    writer = threading.Lock()
    data = ('{"lines": [{"sku": "LG-0-%d", "quantity": 1, "unitPrice": 999, '
            '"productName": "Load item LG-0-%d"}], "orderId": "%s", "currency": "USD", '
            '"customerId": "loadgen-bench-w%d"}')

    def worker(i: int) -> None:
        try:
            con = sqlite3.connect(db_path, timeout=5, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA journal_mode=WAL")
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                t = time.perf_counter()
                with writer:
                    con.execute(
                        "INSERT INTO events (event_id, stream_id, version, event_type, "
                        "schema_version, data, occurred_at, actor, correlation_id, causation_id) "
                        "VALUES (?, ?, 1, 'OrderCreated', 1, ?, ?, 'bench-loadgen', ?, ?)",
                        (str(uuid.uuid4()), str(uuid.uuid4()), data % (n, n, uuid.uuid4(), i),
                         "2026-11-27T01:00:00.000000Z", str(uuid.uuid4()), str(uuid.uuid4())))
                latencies[i].append((time.perf_counter() - t) * 1000)
                counts[i] += 1
            con.close()
        except Exception as exc:  # reported, not raised: one thread must not hang the others
            errors.append(repr(exc))

    import os
    cpu_before = procstat.own_seconds(os.getpid())
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    cpu = procstat.own_seconds(os.getpid()) - cpu_before
    total = sum(counts)
    return {"clients": clients, "rowsPerSecond": round(total / wall, 1), "transactions": total,
            "latencyMs": percentiles([x for lat in latencies for x in lat]),
            "wallSeconds": round(wall, 2), "errors": errors[:3],
            "dbCpuSecondsPer1000": round(cpu / max(total, 1) * 1000, 3),
            "sqliteVersion": sqlite3.sqlite_version}


def flush_limit(directory: Path, seconds: float = 2.0) -> dict:
    """fdatasync()s per second of 8 KiB rewritten in place in `directory` (what one WAL flush
    costs on this disk: the floor under every durable commit, whichever database)."""
    import os
    path = directory / "flush-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\0" * 8192
    times = []
    try:
        stop_at = time.monotonic() + seconds
        while time.monotonic() < stop_at:
            t = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return {"flushesPerSecond": round(len(times) / seconds, 1), "latencyMs": percentiles(times)}
