"""bench/run's driver: see bench/run for the settings and docs/BENCHMARKS.md for the method.

For each backend: the one-row-per-commit limit at every concurrency (pgbench on a private durable
PostgreSQL, or sqlite3), then a fresh server (start-to-ready, idle RSS), then every scenario at
every concurrency, then create-order paced at half its best rate (the p99 target), with visibility samples on the
embedded read model taken under that load (the visibility target). Writes
results.json (and results.md, results.png) into the output directory.
"""

from __future__ import annotations

import json
import os
import platform as pyplatform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import limits, procstat, report
from .postgres import Cluster
from .server import Server, run_loadgen


def env_list(name: str, default: str) -> list[str]:
    return os.environ.get(name, default).split()


def seconds(text: str) -> float:
    text = text.strip()
    for unit, factor in (("ms", 0.001), ("s", 1), ("m", 60)):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "").isdigit():
            return float(text[: -len(unit)]) * factor
    return float(text)


def log(message: str) -> None:
    print(f"bench/run: {message}", file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem = int(handle.readline().split()[1]) / 1048576
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    return {"cpus": os.cpu_count(), "cpuModel": cpu, "memGiB": round(mem, 1),
            "kernel": pyplatform.release(), "commit": commit + (" (modified)" if dirty else "")}


def main() -> None:
    # SIGTERM ends the run like Ctrl-C: through the `finally` that stops the cluster and server.
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    platform_bin = Path(sys.argv[1])
    loadgen_bin = Path(sys.argv[2])
    out_dir = Path(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
    backends = env_list("BENCH_BACKENDS", "sqlite postgres")
    scenarios = env_list("BENCH_SCENARIOS", "create-order add-item mixed")
    concurrencies = [int(c) for c in env_list("BENCH_CONCURRENCIES", "1 4 16 64")]
    duration = os.environ.get("BENCH_DURATION", "3s")
    warmup = os.environ.get("BENCH_WARMUP", "1s")
    half_rate_concurrency = int(os.environ.get("BENCH_HALF_RATE_CONCURRENCY", "16"))
    visibility_samples = int(os.environ.get("BENCH_VISIBILITY_SAMPLES", "200"))
    for b in backends:
        if b not in ("sqlite", "postgres"):
            raise SystemExit(f"bench/run: unknown backend {b!r} (sqlite, postgres)")
    for s in scenarios:
        if s not in ("create-order", "add-item", "mixed"):
            raise SystemExit(f"bench/run: unknown scenario {s!r} (create-order, add-item, mixed)")

    work = Path(tempfile.mkdtemp(prefix="order-bench.", dir=os.environ.get("TMPDIR", "/tmp")))
    results = {"startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "loadBefore": procstat.loadavg(),
               "settings": {"duration": duration, "warmup": warmup, "concurrencies": concurrencies,
                            "scenarios": scenarios},
               "backends": {}}
    cluster: Cluster | None = None
    server: Server | None = None
    try:
        results["flush"] = limits.flush_limit(work)
        log(f"disk: {results['flush']['flushesPerSecond']} fdatasync/s of 8 KiB in {work}")
        for backend in backends:
            entry: dict = {"limit": [], "runs": []}
            results["backends"][backend] = entry
            db_pid = None
            pg_commits = None
            database_url = None
            if backend == "postgres":
                cluster = Cluster(work, max_connections=max(concurrencies) + 50)
                log(f"initdb + postgres on 127.0.0.1:{cluster.port} (durable defaults)")
                cluster.start()
                entry["postgresSettings"] = cluster.settings()
                log(f"settings: {entry['postgresSettings']}")
                for db in ("limitdb", "platform"):
                    cluster.psql("postgres", f"CREATE DATABASE {db}")
                subprocess.run([str(platform_bin), "migrate", "--data-dir", str(work / "migrate"),
                                "--database-url", cluster.url("limitdb")], check=True,
                               stdout=subprocess.DEVNULL, env={k: v for k, v in os.environ.items()
                                                               if not k.startswith("ORDER_PLATFORM_")})
                shutil.rmtree(work / "migrate", ignore_errors=True)
                db_pid = cluster.pid
                database_url = cluster.url("platform")

                def pg_commits(cluster=cluster) -> int:
                    time.sleep(1.2)  # backends flush their statistics about once a second
                    return int(cluster.psql("postgres", "SELECT xact_commit FROM pg_stat_database "
                                            "WHERE datname = 'platform'"))
            else:
                subprocess.run([str(platform_bin), "migrate", "--data-dir", str(work / "sqlite-limit")],
                               check=True, stdout=subprocess.DEVNULL,
                               env={k: v for k, v in os.environ.items()
                                    if not k.startswith("ORDER_PLATFORM_")})

            server = Server(platform_bin, work / f"{backend}-data", database_url)
            entry["startup"] = server.start()
            log(f"server at {server.base_url}: {entry['startup']}")
            token = server.token()
            # The disk's flush time drifts by 10x within minutes on a shared machine: each
            # concurrency measures its limit right before the platform's runs at it.
            def measure_limit(c: int) -> dict:
                if backend == "postgres":
                    log(f"pgbench one row per commit, {c} clients, {duration}")
                    r = limits.pgbench(cluster, "limitdb", c, seconds(duration), work)
                else:
                    log(f"sqlite3 one row per commit, {c} threads, {duration}")
                    r = limits.sqlite_limit(work / "sqlite-limit" / "events.db", c, seconds(duration))
                r["diskFlushesPerSecond"] = limits.flush_limit(work, 1.0)["flushesPerSecond"]
                log(f"  {r['rowsPerSecond']} rows/s, p99 {r['latencyMs']['p99']} ms "
                    f"(disk {r['diskFlushesPerSecond']} flushes/s)")
                return r

            for c in concurrencies:
                # Before and after the platform's runs at this concurrency: the ratio uses their
                # mean, and their spread says how far the disk drifted meanwhile.
                before = measure_limit(c)
                entry["limit"].append(before)
                for scenario in scenarios:
                    log(f"{backend} / {scenario} / concurrency {c}: {duration} after {warmup}"
                        f" (load {procstat.loadavg()})")
                    load = procstat.loadavg()
                    r = run_loadgen(loadgen_bin, server, token, scenario, c, duration, warmup,
                                    work / f"{backend}-{scenario}-{c}.json", db_pid,
                                    pg_commits=pg_commits)
                    r["loadBefore"] = load
                    r["loadAfter"] = procstat.loadavg()
                    entry["runs"].append(r)
                    log(f"  {r['commandsPerSecond']} commands/s, p99 {r['latencyMs']['p99']} ms, "
                        f"server {r['serverCpuSecondsPer1000Commands']} CPU-s/1k")
                    if not server.alive():
                        raise SystemExit(f"bench/run: the server died; see {server.log_path}")
                before["after"] = measure_limit(c)
            if "create-order" in scenarios:
                best = max((r["commandsPerSecond"] for r in entry["runs"]
                            if r["scenario"] == "create-order"), default=0)
                rate = max(1, int(best / 2))
                log(f"{backend} / create-order paced at {rate}/s (half of {best}), "
                    f"concurrency {half_rate_concurrency}")
                load = procstat.loadavg()
                r = run_loadgen(loadgen_bin, server, token, "create-order", half_rate_concurrency,
                                duration, warmup, work / f"{backend}-half-rate.json", db_pid,
                                rate=rate, pg_commits=pg_commits,
                                visibility_samples=visibility_samples)
                r["targetRate"] = rate
                r["loadBefore"] = load
                r["loadAfter"] = procstat.loadavg()
                entry["halfRate"] = r
                v = r["visibility"]
                log(f"  p99 {r['latencyMs']['p99']} ms at {r['commandsPerSecond']}/s; visibility "
                    f"p99 {v['p99Ms']} ms ({v['samples']} samples, {v['timeouts']} timeouts)")
            server.stop()
            server = None
            shutil.rmtree(work / "sqlite-limit", ignore_errors=True)
            if cluster is not None:
                cluster.stop()
                cluster = None
    finally:
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.stop()
        if os.environ.get("BENCH_KEEP") == "1":
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["loadAfter"] = procstat.loadavg()
    results["finishedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report.add_ratios(results)
    text = report.markdown(results)
    print(text)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out_dir / "results.md").write_text(text + "\n")
        log(f"wrote {out_dir}/results.json and results.md")
        report.plot(results, out_dir / "results.png")


if __name__ == "__main__":
    main()
