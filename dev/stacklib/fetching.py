"""Downloads from Maven Central (or STACK_MAVEN_REPOSITORY) into CACHE_DIR, and unpacking.

Both are done once and atomically (temporary file or directory, then rename), so an
interrupted run never leaves a corrupt cache entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .config import CACHE_DIR, V, StackError, log


def maven_url(group: str, artifact: str, version: str, ext: str, classifier: str = "") -> str:
    name = f"{artifact}-{version}" + (f"-{classifier}" if classifier else "") + f".{ext}"
    return f"{V['MAVEN_REPOSITORY']}/{group.replace('.', '/')}/{artifact}/{version}/{name}"


def http_get(url: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def download(url: str, component: str) -> Path:
    """Download into the cache once; atomic (temp file + rename) and checked against the
    repository's SHA-1, so an interrupted download never leaves a corrupt file behind."""
    target = CACHE_DIR / "downloads" / url.rsplit("/", 1)[1]
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(component, f"downloading {url}")
    last_error = None
    for attempt in range(3):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
        try:
            digest = hashlib.sha1()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            try:
                expected = http_get(url + ".sha1", 30).decode().split()[0].strip().lower()
            except (urllib.error.URLError, OSError, IndexError):
                expected = None
            if expected and expected != digest.hexdigest():
                raise StackError(f"checksum mismatch for {url}")
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, StackError) as exc:
            last_error = exc
            time.sleep(attempt + 1)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise StackError(f"download of {url} failed: {last_error}. Check the network connection to "
                     f"{V['MAVEN_REPOSITORY']} (or set MAVEN_REPOSITORY in dev/stack.d/versions.env "
                     "to a mirror), then run dev/stack up again.")


def unpack(archive: Path, dest: Path, component: str, strip_top: bool) -> Path:
    """Unpack once into the cache (temp dir + rename), keeping executable bits."""
    if dest.exists():
        return dest
    log(component, f"unpacking {archive.name}")
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part"))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    path = Path(zf.extract(info, tmp))
                    mode = (info.external_attr >> 16) & 0o777
                    if mode and not info.is_dir():
                        path.chmod(mode | 0o444)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="tar") if hasattr(tarfile, "data_filter") else tf.extractall(tmp)
        root = tmp
        if strip_top:
            entries = list(tmp.iterdir())
            if len(entries) == 1 and entries[0].is_dir():
                root = entries[0]
        root.chmod(0o755)   # mkdtemp makes 0700 dirs; servers run as other users read these
        os.replace(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
