"""The commands: up, check, env, status, down, logs, and main().

`up` fetches in parallel, then starts every component and checks each as soon as it is
ready; a failure names the component, why, and the tail of its log.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import sys
import time

from .component import Component
from .components import COMPONENTS
from .config import CACHE_DIR, STACK_DIR, StackError, log
from .state import State, file_lock


def select(names: list[str]) -> list[Component]:
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise StackError(f"unknown component {', '.join(repr(n) for n in unknown)}; "
                         f"known components: {', '.join(COMPONENTS)}", )
    return [COMPONENTS[n] for n in dict.fromkeys(names or COMPONENTS)]


def timeout_for(component: Component) -> float:
    return float(os.environ.get("STACK_START_TIMEOUT") or component.start_timeout)


def bring_up(component: Component) -> str:
    """Start one component (if needed) and wait until it is ready. Returns a summary."""
    if component.running() and component.record().get("version") != component.version():
        log(component.name, f"running version {component.record().get('version')}, pinned {component.version()}; "
                            "restarting")
        component.stop()
    if component.running():
        try:
            component.wait_ready(min(timeout_for(component), 120))
            return "already running"
        except StackError as exc:
            log(component.name, f"running but not ready ({exc}); restarting")
            component.stop()
    elif component.record().get("pid"):
        component.stop()       # stale record after a crash: clean up leftovers first
    component.start()
    began = time.time()
    try:
        component.wait_ready(timeout_for(component))
    except StackError:
        popen = getattr(component, "_popen", None)
        if popen is None or popen.poll() is None:
            component.stop()   # do not leave a half-started server behind
        else:
            State.update(component.name, pid=None, starttime=None)
        raise
    return f"ready in {time.time() - began:.1f}s"


def log_tail(component: Component, lines: int = 15) -> str:
    try:
        text = component.log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join("    " + line for line in text[-lines:])


def cmd_up(names: list[str]) -> int:
    components = select(names)
    started = time.time()
    failures: list[tuple[Component, str]] = []
    with file_lock(STACK_DIR / ".lock"):
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        # 1. fetch in parallel (downloads, unpacking, mvn; apt-get is serialised)
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            fetches = {pool.submit(c.fetch): c for c in components if not c.running()}
            for future, comp in fetches.items():
                try:
                    future.result()
                except StackError as exc:
                    failures.append((comp, f"fetch failed: {exc}"))
        ok = [c for c in components if c not in {f[0] for f in failures}]
        # 2. start all, wait in parallel, and prove each is usable as soon as it is ready
        def up_and_check(comp: Component) -> None:
            log(comp.name, bring_up(comp))
            try:
                log(comp.name, "check ok: " + comp.check())
            except StackError as exc:
                raise StackError(f"check failed: {exc}") from None

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ok) or 1) as pool:
            futures = {pool.submit(up_and_check, c): c for c in ok}
            for future in concurrent.futures.as_completed(futures):
                comp = futures[future]
                try:
                    future.result()
                except StackError as exc:
                    failures.append((comp, str(exc)))
                except Exception as exc:  # noqa: BLE001 - report, don't hide other components
                    failures.append((comp, f"{type(exc).__name__}: {exc}"))
    if failures:
        for comp, why in failures:
            print(f"dev/stack: {comp.name} FAILED: {why}\n  log: {comp.log_path}\n{log_tail(comp)}",
                  file=sys.stderr)
        return 1
    print(f"dev/stack: {', '.join(c.name for c in components)} up and checked in {time.time() - started:.1f}s; "
          'run: eval "$(dev/stack env)"', file=sys.stderr)
    return 0


def run_checks(components: list[Component]) -> list[tuple[Component, str]]:
    failures = []

    def one(comp: Component) -> str:
        if not comp.running():
            raise StackError("not running (start it with: dev/stack up " + comp.name + ")")
        return comp.check()

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(components) or 1) as pool:
        futures = {pool.submit(one, c): c for c in components}
        for future in concurrent.futures.as_completed(futures):
            comp = futures[future]
            try:
                log(comp.name, "check ok: " + future.result())
            except StackError as exc:
                failures.append((comp, f"check failed: {exc}"))
            except Exception as exc:  # noqa: BLE001
                failures.append((comp, f"check failed: {type(exc).__name__}: {exc}"))
    return failures


def cmd_check(names: list[str]) -> int:
    failures = run_checks(select(names))
    for comp, why in failures:
        print(f"dev/stack: {comp.name} {why}\n  log: {comp.log_path}", file=sys.stderr)
    return 1 if failures else 0


def cmd_env(names: list[str]) -> int:
    print(f"export STACK_DIR={STACK_DIR}")
    for comp in select(names):
        if not comp.record().get("ports"):
            print(f"# {comp.name}: never started (dev/stack up {comp.name})")
            continue
        if not comp.running():
            print(f"# {comp.name}: down (dev/stack up {comp.name}); last known endpoints:")
        for key, value in comp.env().items():
            print(f"export {key}={shell_quote(value)}")
    return 0


def shell_quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


def cmd_status(names: list[str]) -> int:
    for comp in select(names):
        record = comp.record()
        up = comp.running()
        ports = record.get("ports", {})
        port = ports.get("port", "-")
        extra = ",".join(f"{k}={v}" for k, v in ports.items() if k != "port")
        line = (f"{comp.name:<16} {'up' if up else 'down':<5} port {port!s:<6} "
                f"version {record.get('version') if up else comp.version()}")
        if up:
            line += f"  pid {record['pid']}  rss {comp.memory_kib() // 1024} MiB"
        if extra:
            line += f"  ({extra})"
        print(line)
    return 0


def cmd_down(names: list[str]) -> int:
    with file_lock(STACK_DIR / ".lock"):
        for comp in reversed(select(names)):
            log(comp.name, comp.stop())
    return 0


def cmd_logs(names: list[str]) -> int:
    for comp in select(names):
        print(f"== {comp.log_path}")
        print(log_tail(comp, 40))
    return 0


def main(argv: list[str], usage: str) -> int:
    commands = {"up": cmd_up, "down": cmd_down, "env": cmd_env, "status": cmd_status,
                "check": cmd_check, "logs": cmd_logs}
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage.strip())
        return 0 if argv else 2
    if argv[0] not in commands:
        print(f"dev/stack: unknown command {argv[0]!r}; commands: {', '.join(commands)} (see dev/stack --help)",
              file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except StackError as exc:
        print(f"dev/stack: {exc}", file=sys.stderr)
        return 2 if "unknown component" in str(exc) else 1
    except KeyboardInterrupt:
        print("dev/stack: interrupted", file=sys.stderr)
        return 130

