"""Ratios to the limit, the Markdown tables and the PNG (throughput and p99 against concurrency)."""

from __future__ import annotations

import sys
from pathlib import Path

TARGET_P99_MS = 10.0
TARGET_RSS_MIB = 50.0
TARGET_READY_S = 0.5
TARGET_VISIBILITY_P99_MS = 50.0


def mean_limit(r: dict) -> float:
    """The limit's rows/s before the platform's runs, averaged with the one after, if any."""
    if "after" in r:
        return round((r["rowsPerSecond"] + r["after"]["rowsPerSecond"]) / 2, 1)
    return r["rowsPerSecond"]


def add_ratios(results: dict) -> None:
    """Each run's commands/s over the limit's rows/s at the same concurrency."""
    for entry in results["backends"].values():
        limit = {r["clients"]: mean_limit(r) for r in entry["limit"]}
        for run in entry["runs"] + ([entry["halfRate"]] if "halfRate" in entry else []):
            base = limit.get(run["concurrency"])
            run["limitRowsPerSecond"] = base
            run["ratioToLimit"] = round(run["commandsPerSecond"] / base, 3) if base else None


def _behind(r: dict) -> str:
    behind = r.get("projectorBehindAtEnd")
    if behind is None:
        return "–"
    catch_up = r.get("projectorCatchUpSeconds")
    return f"{behind:,}" + (f" ({catch_up} s to catch up)" if behind else "")


def _f(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"### durable benchmark, {results['startedAt']}, commit {m['commit']}", "",
             f"Machine: {m['cpus']} CPUs ({m['cpuModel']}), {m['memGiB']} GiB RAM, Linux {m['kernel']}; "
             f"load average before {results['loadBefore']}, after {results['loadAfter']}. "
             f"{results['settings']['duration']} measured after {results['settings']['warmup']} "
             "warm-up per point.", ""]
    if "flush" in results:
        f = results["flush"]
        lines += [f"Disk: {f['flushesPerSecond']} flushes/s (8 KiB pwrite + fdatasync, same file "
                  f"system as the databases; p50 {f['latencyMs']['p50']} ms, "
                  f"p99 {f['latencyMs']['p99']} ms): the ceiling of one-flush-per-commit.", ""]
    for backend, entry in results["backends"].items():
        if "postgresSettings" in entry:
            s = entry["postgresSettings"]
            lines += [f"PostgreSQL (private cluster started by bench/run): " +
                      ", ".join(f"{k}={v}" for k, v in s.items()) + ".", ""]
        st = entry.get("startup", {})
        lines += [f"**{backend}**: start to ready {st.get('startToReadySeconds')} s "
                  f"(target ≤ {TARGET_READY_S}), idle RSS {st.get('idleRssMiB')} MiB "
                  f"(target ≤ {TARGET_RSS_MIB:.0f}).", ""]
        lines += ["| limit: one row per commit | clients | rows/s before → after (mean) | p50 ms | p99 ms "
                  "| DB CPU-s / 1k rows | disk flushes/s before → after |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        tool = "pgbench" if backend == "postgres" else "sqlite3 (Python)"
        for r in entry["limit"]:
            a = r.get("after", {})
            lines.append(f"| {tool} | {r['clients']} | {_f(r['rowsPerSecond'])} → "
                         f"{_f(a.get('rowsPerSecond'))} (**{_f(mean_limit(r))}**) | "
                         f"{_f(r['latencyMs']['p50'], 2)} | {_f(r['latencyMs']['p99'], 2)} | "
                         f"{_f(r['dbCpuSecondsPer1000'], 3)} | {_f(r.get('diskFlushesPerSecond'))} → "
                         f"{_f(a.get('diskFlushesPerSecond'))} |")
        lines += ["", "| scenario | concurrency | commands/s | × limit | p50 ms | p95 ms | p99 ms | "
                  "errors | server CPU-s / 1k cmd | DB CPU-s / 1k cmd | cmd / batch | DB xact / cmd "
                  "| read model behind at end (events) | load |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        runs = entry["runs"] + ([entry["halfRate"]] if "halfRate" in entry else [])
        for r in runs:
            name = r["scenario"] + (f" @ {r['targetRate']}/s" if "targetRate" in r else "")
            lat = r["latencyMs"]
            lines.append(
                f"| {name} | {r['concurrency']} | {_f(r['commandsPerSecond'])} | "
                f"{_f(r.get('ratioToLimit'), 2)} | {_f(lat['p50'], 2)} | {_f(lat.get('p95'), 2)} | "
                f"{_f(lat['p99'], 2)} | {r['errors']} | {_f(r['serverCpuSecondsPer1000Commands'], 3)} | "
                f"{_f(r.get('dbCpuSecondsPer1000Commands'), 3)} | {_f(r.get('avgCommandsPerBatch'), 2)} | "
                f"{_f(r.get('dbCommitsPerCommand'), 2)} | {_behind(r)} | {r['loadBefore']} |")
        lines.append("")
        half = entry.get("halfRate")
        if half and half.get("visibility", {}).get("requested"):
            v = half["visibility"]
            lines += [f"Embedded read-model visibility under the half-rate load (command answered → "
                      f"`GET` without a token shows it; {v['samples']} of {v['requested']} samples, "
                      f"{v['timeouts']} timed out): p50 {_f(v['p50Ms'], 2)} ms, **p99 "
                      f"{_f(v['p99Ms'], 2)} ms** (target ≤ {TARGET_VISIBILITY_P99_MS:.0f}), max "
                      f"{_f(v['maxMs'], 2)} ms.", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench/run: matplotlib not installed: no PNG (see docs/BENCHMARKS.md)", file=sys.stderr)
        return
    fig, (tp, p99) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {"sqlite": "tab:blue", "postgres": "tab:orange"}
    styles = {"create-order": "o-", "add-item": "s-", "mixed": "^-"}
    for backend, entry in results["backends"].items():
        color = colors.get(backend)
        xs = [r["clients"] for r in entry["limit"]]
        tp.plot(xs, [mean_limit(r) for r in entry["limit"]], "--", color=color, alpha=0.6,
                label=f"{backend} limit (1 row/commit)")
        p99.plot(xs, [r["latencyMs"]["p99"] for r in entry["limit"]], "--", color=color, alpha=0.6,
                 label=f"{backend} limit")
        for scenario in results["settings"]["scenarios"]:
            runs = [r for r in entry["runs"] if r["scenario"] == scenario]
            xs = [r["concurrency"] for r in runs]
            tp.plot(xs, [r["commandsPerSecond"] for r in runs], styles.get(scenario, "o-"),
                    color=color, label=f"{backend} {scenario}")
            p99.plot(xs, [r["latencyMs"]["p99"] for r in runs], styles.get(scenario, "o-"),
                     color=color, label=f"{backend} {scenario}")
    for ax, title, ylabel in ((tp, "throughput", "commands/s (limit: rows/s)"),
                              (p99, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(results["settings"]["concurrencies"],
                      [str(c) for c in results["settings"]["concurrencies"]])
        ax.set_xlabel("concurrency (clients)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    p99.set_yscale("log")
    tp.legend(fontsize=7)
    m = results["machine"]
    fig.suptitle(f"order-platform, durable stores, {results['startedAt']}, commit {m['commit']}, "
                 f"{m['cpus']} CPUs, load {results['loadBefore']} → {results['loadAfter']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"bench/run: wrote {path}", file=sys.stderr)
