"""Configuration: paths, pinned versions, fixed credentials (development only).

Everything here is computed once at import from the environment (STACK_DIR,
XDG_CACHE_HOME, STACK_MAVEN_REPOSITORY) and dev/stack.d/versions.env; the other modules
import these names and never change them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# This file is dev/stacklib/config.py: dev/ is two levels up (symlinks resolved, so a
# linked dev/stack still finds the repository it belongs to).
DEV_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = DEV_DIR.parent
HELPERS = DEV_DIR / "stack.d"
REALM_FILE = DEV_DIR / "realm" / "order-platform-realm.json"
STACK_DIR = Path(os.environ.get("STACK_DIR") or (REPO_ROOT / ".stack")).absolute()
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")) / "order-platform-stack"

# Every process we start carries this variable; `down` uses it to recognise our own
# processes (and never kills anything else), even after a crash lost the pid files.
MARK_VAR = "ORDER_PLATFORM_STACK_DIR"

# When run as root, PostgreSQL and Elasticsearch (which refuse to run as root) run as
# this dedicated system user.
SERVICE_USER = "orderplatform-stack"

DB_NAME = DB_USER = DB_PASSWORD = "order_platform"
PG_SUPERUSER_PASSWORD = "postgres"
KEYCLOAK_ADMIN = ("admin", "admin")
REALM = "order-platform"
AUDIENCE = "order-platform-api"
SERVICE_CLIENT = ("order-platform-service", "order-platform-service-secret")
WEB_CLIENT = "order-platform-web"
TEST_CLIENT = "order-platform-test"
TEST_USERS = {"customer1": "customer", "ops1": "ops", "analyst1": "analyst", "admin1": "admin"}
TEST_PASSWORD = "password"


def load_versions() -> dict[str, str]:
    versions = {}
    for line in (HELPERS / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


V = load_versions()
# A mirror of Maven Central can be used without editing the pinned versions file.
V["MAVEN_REPOSITORY"] = os.environ.get("STACK_MAVEN_REPOSITORY") or V["MAVEN_REPOSITORY"]


class StackError(Exception):
    """A failure with a message meant for a human (printed without a traceback)."""


def log(component: str, message: str) -> None:
    print(f"[{component}] {message}", file=sys.stderr, flush=True)
