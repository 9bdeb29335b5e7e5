"""STACK_DIR/state.json (chosen ports, pids, start times, versions) and the lock that
serialises `up` and `down` of one stack."""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
from pathlib import Path

from .config import STACK_DIR


@contextlib.contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class State:
    """STACK_DIR/state.json: {"components": {name: {"ports": {...}, "pid": ..., ...}}}."""

    path = STACK_DIR / "state.json"
    _lock = threading.Lock()

    @classmethod
    def load(cls) -> dict:
        try:
            return json.loads(cls.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"components": {}}

    @classmethod
    def get(cls, name: str) -> dict:
        return cls.load()["components"].get(name, {})

    @classmethod
    def update(cls, name: str, **fields) -> None:
        with cls._lock:
            data = cls.load()
            entry = data["components"].setdefault(name, {})
            for key, value in fields.items():
                if value is None:
                    entry.pop(key, None)
                else:
                    entry[key] = value
            cls.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cls.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            tmp.replace(cls.path)
