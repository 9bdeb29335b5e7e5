"""What the binary reads: the ORDER_PLATFORM_* variables of each subcommand (its --help),
the settings each service needs, and whether it accepts given values."""

import os
import re
import tempfile
from pathlib import Path

from .common import Failure, run

# The production services and what each cannot start without, besides what its --help marks
# "(required". A tuple is "one of these"; OIDC_ISSUER also needs OIDC_AUDIENCE (checked apart).
SERVICES = ["command-service", "relay", "query-service", "gateway"]
TOKENS = ("ORDER_PLATFORM_OIDC_ISSUER", "ORDER_PLATFORM_DATA_DIR")
REQUIRED = {
    "command-service": ["ORDER_PLATFORM_DATABASE_URL", TOKENS],
    "relay": ["ORDER_PLATFORM_DATABASE_URL", "ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS",
              "ORDER_PLATFORM_SCHEMA_REGISTRY_URL"],
    "query-service": ["ORDER_PLATFORM_DATABASE_URL", "ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS",
                      "ORDER_PLATFORM_SCHEMA_REGISTRY_URL", "ORDER_PLATFORM_ELASTICSEARCH_URL",
                      TOKENS],
    "gateway": ["ORDER_PLATFORM_COMMAND_URL", "ORDER_PLATFORM_QUERY_URL", TOKENS],
}

ENV_RE = re.compile(r"\[env: (ORDER_PLATFORM_[A-Z0-9_]+)")


class Help:
    """The ORDER_PLATFORM_* variables of one subcommand, and those its --help says are required."""

    def __init__(self, text: str) -> None:
        self.names = set(ENV_RE.findall(text))
        # One block per option: it starts at a line `  --flag` or `  -x, --flag`.
        blocks = re.split(r"\n(?=\s*(?:-\w, )?--[a-z])", text)
        self.required = {m.group(1) for b in blocks if "(required" in b
                         for m in [ENV_RE.search(b)] if m}


def read_help(bin_path: Path, subcommand: str) -> Help | None:
    p = run([bin_path, subcommand, "--help"])
    if p.returncode == 0:
        return Help(p.stdout)
    if "unrecognized subcommand" in p.stderr:
        return None
    raise Failure(f"{bin_path} {subcommand} --help failed: {p.stderr.strip()}")


def env_problems(subcommand: str, names: set[str], helps: dict) -> list[str]:
    help_ = helps.get(subcommand)
    problems = []
    if help_ is not None:
        for name in sorted(n for n in names if n.startswith("ORDER_PLATFORM_")):
            if name not in help_.names:
                problems.append(f"{name}: `order-platform {subcommand}` does not read it "
                                f"(it reads {', '.join(sorted(help_.names))})")
    required = list(REQUIRED.get(subcommand, []))
    required += sorted(r for r in (help_.required if help_ else []) if r not in required)
    for need in required:
        options = need if isinstance(need, tuple) else (need,)
        if not any(o in names for o in options):
            problems.append(f"`{subcommand}` needs {' or '.join(options)}, which is not set")
    if "ORDER_PLATFORM_OIDC_ISSUER" in names and "ORDER_PLATFORM_OIDC_AUDIENCE" not in names:
        problems.append(f"`{subcommand}`: ORDER_PLATFORM_OIDC_ISSUER without ORDER_PLATFORM_OIDC_AUDIENCE")
    return problems


def value_problems(bin_path: Path, subcommand: str, values: dict) -> list[str]:
    """Whether the binary accepts these variables' values (durations, numbers, booleans, rate
    limits, addresses), without starting anything: clap checks every variable before the
    binary reads its --config file, so a --config that does not exist stops it right after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_PLATFORM_")}
    env.update({k: str(v) for k, v in values.items() if v is not None})
    with tempfile.TemporaryDirectory(prefix="deploy-check-values.") as tmp:
        missing = f"{tmp}/no-such-file.toml"
        p = run([bin_path, subcommand, "--config", missing], env=env, timeout=30)
    if p.returncode == 2 and missing in p.stderr:
        return []
    return [f"`{subcommand}` refuses these values: " + " ".join(p.stderr.strip().splitlines()[:3])]

