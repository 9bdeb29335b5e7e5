"""Tools a fresh machine may lack: Debian packages (installed with apt-get when run as
root, otherwise the message says what to install), a suitable Java per server, and the
dedicated system user for the servers that refuse to run as root."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import stat
import subprocess
import threading
from pathlib import Path

from .config import SERVICE_USER, StackError, log
from .processes import run


_apt_lock = threading.Lock()
_apt_updated = False


def apt_install(packages: list[str], why: str) -> None:
    """Install Debian packages, without letting their postinst start system services."""
    global _apt_updated
    if not shutil.which("apt-get"):
        raise StackError(f"{why}: needs the Debian package(s) {' '.join(packages)}, and apt-get "
                         "is not available. Install them with your system's package manager.")
    if os.geteuid() != 0:
        raise StackError(f"{why}: needs the Debian package(s) {' '.join(packages)}. Install them "
                         f"with: sudo apt-get install -y {' '.join(packages)}")
    with _apt_lock:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        policy = Path("/usr/sbin/policy-rc.d")
        created_policy = False
        if not policy.exists():
            # Standard Debian mechanism: invoke-rc.d asks policy-rc.d, 101 = "do not start".
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            created_policy = True
        try:
            if not _apt_updated:
                log("apt", "apt-get update")
                run(["apt-get", "update"], what="apt-get update", env=env)
                _apt_updated = True
            log("apt", f"apt-get install {' '.join(packages)}")
            run(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                what=f"apt-get install {' '.join(packages)}", env=env)
        finally:
            if created_policy:
                policy.unlink(missing_ok=True)


def need_binary(candidates: list[str], package: str, why: str) -> str:
    """Path of the first existing candidate binary; install the Debian package if none."""
    def find():
        for cand in candidates:
            path = cand if os.path.isabs(cand) else shutil.which(cand)
            if path and os.access(path, os.X_OK):
                return path
        return None
    found = find()
    if not found:
        apt_install([package], why)
        found = find()
        if not found:
            raise StackError(f"{why}: installed {package} but still cannot find {candidates[0]}")
    return found


_java_cache: dict = {}


def java_major(java: str) -> int:
    if java not in _java_cache:
        try:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
            match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
            major = int(match.group(1)) if match else 0
            if major == 1 and match.group(2):
                major = int(match.group(2))
        except OSError:
            major = 0
        _java_cache[java] = major
    return _java_cache[java]


def find_java(component: str, minimum: int = 17, maximum: int = 99, javac: bool = False) -> str:
    """A java binary in [minimum, maximum]: JAVA_HOME first, then PATH, then /usr/lib/jvm."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    if shutil.which("java"):
        candidates.append(os.path.realpath(shutil.which("java")))
    for jvm_dir in (os.environ.get("STACK_JVM_DIRS") or "/usr/lib/jvm").split(os.pathsep):
        candidates += sorted(glob.glob(os.path.join(jvm_dir, "*", "bin", "java")))
    for java in candidates:
        if not os.access(java, os.X_OK):
            continue
        if javac and not os.access(os.path.join(os.path.dirname(java), "javac"), os.X_OK):
            continue
        if minimum <= java_major(java) <= maximum:
            return java
    kind = "a JDK, with javac" if javac else "a JDK or JRE"
    raise StackError(
        f"{component} needs Java {minimum}" + (f" to {maximum}" if maximum < 99 else "+")
        + f" ({kind}), and none was found (looked at JAVA_HOME, PATH and /usr/lib/jvm). "
        + ("On Debian 12: apt-get install -y openjdk-17-jdk-headless" if minimum <= 17 else
           f"Install a JDK {minimum}+ (Debian 13: openjdk-{minimum}-jdk-headless; elsewhere e.g. Eclipse Temurin)")
        + ", or point JAVA_HOME at one.")


def java_home(java: str) -> str:
    return str(Path(java).resolve().parent.parent)


def service_user() -> str | None:
    """None when not root (run as ourselves); else the dedicated user, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVICE_USER], what=f"useradd {SERVICE_USER}")
    return SERVICE_USER


def chown_tree(path: Path, user: str | None) -> None:
    if not user:
        return
    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.lchown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


def reachable_by_others(path: Path) -> bool:
    """Can another (unprivileged) user traverse every directory above path?"""
    for parent in [path, *path.parents]:
        if parent.exists() and not (parent.stat().st_mode & stat.S_IXOTH):
            return False
    return True


_certificate_lock = threading.Lock()


def stack_certificate() -> tuple[Path, Path, Path]:
    """The stack's TLS files (STACK_DIR/tls/), made once with openssl: a CA (`ca.crt`, what
    a client trusts: `sslrootcert=`, `SSL_CERT_FILE=`) and the server certificate it
    signed for 127.0.0.1 and localhost (`server.crt`, `server.key`), which PostgreSQL and
    Redis serve. Two certificates, not one self-signed: verifiers refuse a CA certificate
    presented as a server's (webpki: CaUsedAsEndEntity). Returns (ca, cert, key)."""
    from .config import STACK_DIR
    folder = STACK_DIR / "tls"
    ca, cert, key = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    with _certificate_lock:  # components start in parallel
        if not (ca.exists() and cert.exists() and key.exists()):
            _make_certificates(folder)
    return ca, cert, key


def _make_certificates(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    openssl = need_binary(["openssl", "/usr/bin/openssl"], "openssl", "the stack's TLS certificates")
    what = "openssl (the stack's TLS certificates)"
    run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
         "-subj", "/CN=order-platform dev stack CA",
         "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.crt")], what=what)
    run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", str(folder / "server.key"), "-out", str(folder / "server.csr")], what=what)
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run([openssl, "x509", "-req", "-in", str(folder / "server.csr"), "-CA", str(folder / "ca.crt"),
         "-CAkey", str(folder / "ca.key"), "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
         "-days", "3650", "-extfile", str(extensions), "-out", str(folder / "server.crt")], what=what)
    for name in ("ca.key", "server.key"):
        (folder / name).chmod(0o600)
