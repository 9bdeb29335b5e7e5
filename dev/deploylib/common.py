"""What every part of dev/deploy_check shares: paths, messages, results, running tools."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY_D = ROOT / "dev" / "deploy.d"
CHART = ROOT / "deploy" / "helm" / "order-platform"
ENVIRONMENTS = ["dev", "staging", "prod"]
TOOLS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "order-platform" / "tools"
# The Kubernetes version short mode validates against (and renders for).
KUBE_VERSION = "1.33.0"
KUBE_MIN_MINOR = 25  # the chart's kubeVersion: >=1.25


def say(message: str) -> None:
    print(f"deploy_check: {message}", file=sys.stderr, flush=True)


class Failure(Exception):
    """A tool could not be had; the message says what to do."""


class Results:
    def __init__(self) -> None:
        self.passed = self.failed = self.skipped = 0

    def check(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"deploy_check: FAIL  {name}")
            for p in problems:
                print(f"    {p}")
        else:
            self.passed += 1
            print(f"deploy_check: ok    {name}")

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"deploy_check: skip  {name}: {why}")


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


def output_problems(p: subprocess.CompletedProcess) -> list[str]:
    if p.returncode == 0:
        return []
    lines = (p.stdout + p.stderr).strip().splitlines()
    return lines[-30:] or [f"exit status {p.returncode}"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def prune(prefix: str, keep: Path) -> None:
    """Old versions of a cached tool go, so the cache holds one of each."""
    for old in TOOLS.glob(prefix + "*"):
        if old != keep and old.is_dir() and not old.name.endswith(".part"):
            shutil.rmtree(old, ignore_errors=True)

