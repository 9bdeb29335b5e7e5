"""One `order-platform serve` for a backend: start-to-ready time, idle RSS, a token, loadgen runs
with the server's and the database's CPU over each, and the event store's batch sizes from
/metrics (PostgreSQL's group commit)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

from . import procstat


class Server:
    def __init__(self, platform: Path, data_dir: Path, database_url: str | None):
        self.platform = platform
        self.data_dir = data_dir
        self.database_url = database_url
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_PLATFORM_")}
        env["RUST_LOG"] = os.environ.get("BENCH_SERVER_LOG", "warn")
        return env

    def start(self) -> dict:
        """Starts the server; returns start-to-ready seconds and idle RSS."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [str(self.platform), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        self.log_path = self.data_dir.with_suffix(".server.log")
        log = open(self.log_path, "w")
        started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self._env())
        ready_at = None
        while time.monotonic() - started < 60:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench/run: the server exited during start-up; see {self.log_path}")
            if not self.base_url:
                m = re.search(r"listening on (http://[0-9.:]+)", self.log_path.read_text())
                if m:
                    self.base_url = m.group(1)
            if self.base_url:
                try:
                    with urllib.request.urlopen(f"{self.base_url}/health/ready", timeout=2) as r:
                        if r.status == 200:
                            ready_at = time.monotonic()
                            break
                except OSError:
                    pass
            time.sleep(0.005)
        if ready_at is None:
            raise SystemExit(f"bench/run: the server was not ready within 60 s; see {self.log_path}")
        time.sleep(2)  # idle: nothing but the projector's and pool's background work
        return {"startToReadySeconds": round(ready_at - started, 3),
                "idleRssMiB": round(procstat.rss_mib(self.proc.pid) or 0, 1)}

    def token(self) -> str:
        out = subprocess.run([str(self.platform), "token", "--sub", "bench-loadgen", "--role", "ops",
                              "--data-dir", str(self.data_dir), "--ttl", "4h"],
                             capture_output=True, text=True, check=True, env=self._env())
        return out.stdout.strip()

    def batch_histogram(self) -> tuple[float, float]:
        """(sum, count) of order_platform_event_store_batch_commands, (0, 0) when absent."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith("order_platform_event_store_batch_commands_sum"):
                total = float(line.split()[-1])
            elif line.startswith("order_platform_event_store_batch_commands_count"):
                count = float(line.split()[-1])
        return total, count

    def projector_behind(self) -> int | None:
        """Events the embedded read model has not applied yet (measured by the server every
        second), None when the metric is absent."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("order_platform_projector_events_behind "):
                    return int(float(line.split()[-1]))
        return None

    def wait_caught_up(self, timeout: float = 300) -> float:
        """Waits until the embedded read model has applied every event (a run must not start
        with the previous one's backlog); returns the seconds waited."""
        started = time.monotonic()
        time.sleep(1.1)  # the server measures the backlog once a second
        while (self.projector_behind() or 0) > 0:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"bench/run: the read model did not catch up within {timeout} s")
            time.sleep(0.5)
        return round(time.monotonic() - started, 1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def run_loadgen(loadgen: Path, server: Server, token: str, scenario: str, concurrency: int,
                duration: str, warmup: str, json_path: Path, db_pid: int | None,
                rate: int | None = None, pg_commits=None, visibility_samples: int = 0) -> dict:
    """One loadgen run; its JSON plus CPU per 1,000 commands of the server and the database.

    With `visibility_samples`, that many extra commands are issued one at a time during the
    measured phase, each polled on the embedded read model until it shows (under the load)."""
    args = [str(loadgen), "--url", server.base_url, "--scenario", scenario,
            "--concurrency", str(concurrency), "--duration", duration, "--warmup", warmup,
            "--visibility-samples", str(visibility_samples), "--json-file", str(json_path), "--json"]
    if visibility_samples:
        args.append("--visibility-under-load")
    if rate:
        args += ["--rate", str(rate)]
    server.wait_caught_up()  # the previous run's backlog, if any, is not this run's
    batch_before = server.batch_histogram()
    commits_before = pg_commits() if pg_commits else None
    server_before = procstat.own_seconds(server.proc.pid)
    db_before = procstat.tree_seconds(db_pid) if db_pid else 0.0
    done = subprocess.run(args, capture_output=True, text=True,
                          env={**os.environ, "ORDER_LOADGEN_TOKEN": token})
    # A run's commands are done when their events are in the read model too: how far it was
    # behind when the load stopped says whether it kept up; its CPU until it has caught up
    # belongs to this run (a projector that falls behind only moves its work later).
    time.sleep(1.1)
    behind_at_end = server.projector_behind()
    catch_up = server.wait_caught_up()
    server_cpu = procstat.own_seconds(server.proc.pid) - server_before
    db_cpu = (procstat.tree_seconds(db_pid) - db_before) if db_pid else None
    if done.returncode not in (0, 2) or not json_path.exists():
        raise SystemExit(f"bench/run: order-loadgen failed:\n{done.stderr[-3000:]}")
    result = json.loads(json_path.read_text())
    issued = max(result.get("commandsIssued", 0), 1)
    result["serverCpuSecondsPer1000Commands"] = round(server_cpu / issued * 1000, 3)
    result["dbCpuSecondsPer1000Commands"] = (
        round(db_cpu / issued * 1000, 3) if db_cpu is not None else None)
    result["projectorBehindAtEnd"] = behind_at_end
    result["projectorCatchUpSeconds"] = catch_up
    batch_after = server.batch_histogram()
    batches = batch_after[1] - batch_before[1]
    result["groupCommitBatches"] = int(batches)
    result["avgCommandsPerBatch"] = (
        round((batch_after[0] - batch_before[0]) / batches, 2) if batches else None)
    if pg_commits:
        result["dbCommitsPerCommand"] = round((pg_commits() - commits_before) / issued, 3)
    return result
