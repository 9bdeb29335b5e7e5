"""Smoke test of the development stack: `dev/stack up`, then prove every server is usable.

Run it with `python3 -m pytest dev/smoke_test.py` (the repository's test command runs it
before the Rust suites). It leaves the stack running on purpose: the tests that follow use
the same servers; whoever started the run calls `dev/stack down` afterwards.

The bad-input tests use a throw-away STACK_DIR with Redis only (cheap), so they never
disturb the main stack.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEV = Path(__file__).resolve().parent
REPO = DEV.parent
STACK = DEV / "stack"
COMPONENTS = ["postgres", "kafka", "schema-registry", "elasticsearch", "keycloak", "redis", "prometheus", "jaeger"]


def stack(*args: str, env: dict | None = None, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STACK), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def state_dir() -> Path:
    return Path(os.environ.get("STACK_DIR") or REPO / ".stack")


def recorded_pids(directory: Path) -> dict[str, int]:
    data = json.loads((directory / "state.json").read_text())
    return {name: entry.get("pid") for name, entry in data["components"].items()}


@pytest.fixture(scope="session")
def stack_up():
    result = stack("up")
    assert result.returncode == 0, "dev/stack up failed:\n" + explain(result)
    return result


# ---- the stack really works -------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_component_is_usable(stack_up, component):
    result = stack("check", component, timeout=300)
    assert result.returncode == 0, explain(result)
    assert f"[{component}] check ok" in result.stderr


def test_env_exports_every_endpoint(stack_up):
    result = stack("env")
    assert result.returncode == 0, explain(result)
    exports = dict(re.findall(r"^export (\w+)=(.*)$", result.stdout, re.M))
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "ELASTICSEARCH_URL",
                 "OIDC_ISSUER_URL", "OIDC_AUDIENCE", "REDIS_URL", "PROMETHEUS_URL", "KEYCLOAK_URL"):
        assert name in exports, f"{name} missing from dev/stack env:\n{result.stdout}"
    assert exports["OIDC_AUDIENCE"] == "order-platform-api"
    assert exports["SCHEMA_REGISTRY_URL"].endswith("/apis/ccompat/v7")
    assert exports["DATABASE_URL"].startswith("postgres://order_platform:order_platform@127.0.0.1:")
    # `eval "$(dev/stack env)"` must work in a POSIX shell and give the same values.
    shell = subprocess.run(["sh", "-c", f'eval "$("{sys.executable}" "{STACK}" env)" && echo "$DATABASE_URL"'],
                           capture_output=True, text=True)
    assert shell.stdout.strip() == exports["DATABASE_URL"]


def test_status_prints_one_line_per_component(stack_up):
    result = stack("status")
    assert result.returncode == 0, explain(result)
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == COMPONENTS
    for line in lines:
        assert line.split()[1] == "up", line
        assert re.search(r"port \d+", line) and "version " in line, line


def test_up_twice_does_not_start_duplicates(stack_up):
    before = recorded_pids(state_dir())
    result = stack("up")
    assert result.returncode == 0, explain(result)
    assert recorded_pids(state_dir()) == before
    assert result.stderr.count("already running") == len(COMPONENTS), result.stderr


# ---- bad input and failures give clear messages --------------------------------------------


def test_unknown_component_is_rejected_clearly():
    result = stack("up", "postgres", "nosuchthing")
    assert result.returncode != 0
    assert "unknown component 'nosuchthing'" in result.stderr
    assert "known components: postgres, kafka" in result.stderr


def test_unknown_command_is_rejected_clearly():
    result = stack("explode")
    assert result.returncode != 0
    assert "unknown command 'explode'" in result.stderr


def isolated_env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ, STACK_DIR=str(tmp_path / "stack"))
    env.update(extra)
    return env


def test_taken_port_is_skipped_and_crash_is_cleaned_up(tmp_path):
    # Occupy the preferred Redis port (it may already be taken by the main stack: fine).
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 56379))
        blocker.listen()
    except OSError:
        blocker.close()
        blocker = None
    env = isolated_env(tmp_path)
    try:
        result = stack("up", "redis", env=env, timeout=300)
        assert result.returncode == 0, explain(result)
        state = json.loads((tmp_path / "stack" / "state.json").read_text())["components"]["redis"]
        assert state["ports"]["port"] != 56379
        pid = state["pid"]

        # A crash: the server dies without `down`. status says down, down cleans up.
        os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert stack("status", "redis", env=env).stdout.split()[1] == "down"
        result = stack("down", env=env)
        assert result.returncode == 0, explain(result)
        assert "stale pid cleaned up" in result.stderr
        assert "pid" not in json.loads((tmp_path / "stack" / "state.json").read_text())["components"]["redis"]
    finally:
        stack("down", env=env)
        if blocker:
            blocker.close()


def test_down_never_kills_a_process_that_is_not_ours(tmp_path):
    env = isolated_env(tmp_path)
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        starttime = Path(f"/proc/{stranger.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        (tmp_path / "stack").mkdir()
        (tmp_path / "stack" / "state.json").write_text(json.dumps({"components": {"redis": {
            "pid": stranger.pid, "starttime": starttime, "ports": {"port": 1}}}}))
        result = stack("down", "redis", env=env)
        assert result.returncode == 0, explain(result)
        assert "not ours" in result.stderr
        assert stranger.poll() is None, "dev/stack down killed a process it did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_failed_download_names_what_and_how(tmp_path):
    env = isolated_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"),
                       STACK_MAVEN_REPOSITORY="http://127.0.0.1:9/maven2")
    result = stack("up", "elasticsearch", env=env, timeout=300)
    assert result.returncode != 0
    assert "elasticsearch FAILED" in result.stderr
    assert "download of http://127.0.0.1:9/maven2/" in result.stderr
    assert "network" in result.stderr


def test_missing_java_names_what_and_how(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = isolated_env(tmp_path, PATH=str(empty), STACK_JVM_DIRS=str(tmp_path / "no-jvms"),
                       XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("JAVA_HOME", None)
    result = stack("up", "kafka", env=env, timeout=300)
    assert result.returncode != 0
    assert "kafka FAILED" in result.stderr
    assert "Java" in result.stderr and "JAVA_HOME" in result.stderr and "apt-get install" in result.stderr


# ---- the repository's descriptions agree with each other ------------------------------------


def pinned_versions() -> dict[str, str]:
    pairs = re.findall(r"^(\w+)=(\S+)$", (DEV / "stack.d" / "versions.env").read_text(), re.M)
    return dict(pairs)


def test_docker_compose_uses_the_pinned_versions_and_the_same_realm():
    compose = (REPO / "docker-compose.yml").read_text()
    v = pinned_versions()
    for image in (f"postgres:{v['POSTGRES_MAJOR']}", f"apache/kafka:{v['KAFKA_VERSION']}",
                  f"apicurio/apicurio-registry:{v['APICURIO_VERSION']}",
                  f"docker.elastic.co/elasticsearch/elasticsearch:{v['ELASTICSEARCH_VERSION']}",
                  f"quay.io/keycloak/keycloak:{v['KEYCLOAK_VERSION']}", f"redis:{v['REDIS_IMAGE_TAG']}",
                  f"prom/prometheus:{v['PROMETHEUS_IMAGE_TAG']}",
                  f"jaegertracing/jaeger:{v['JAEGER_VERSION']}", f"grafana/grafana:{v['GRAFANA_IMAGE_TAG']}"):
        assert f"image: {image}" in compose, f"docker-compose.yml should use {image}"
    assert "./dev/realm/order-platform-realm.json:" in compose
    assert "--import-realm" in compose


def test_realm_file_has_roles_clients_and_users():
    realm = json.loads((DEV / "realm" / "order-platform-realm.json").read_text())
    assert realm["realm"] == "order-platform"
    assert {r["name"] for r in realm["roles"]["realm"]} == {"customer", "ops", "analyst", "admin"}
    clients = {c["clientId"]: c for c in realm["clients"]}
    service = clients["order-platform-service"]
    assert not service["publicClient"] and service["serviceAccountsEnabled"]
    web = clients["order-platform-web"]
    assert web["publicClient"] and web["standardFlowEnabled"]
    assert web["attributes"]["pkce.code.challenge.method"] == "S256"
    assert clients["order-platform-test"]["directAccessGrantsEnabled"]
    for client in (service, web, clients["order-platform-test"]):
        audiences = [m["config"].get("included.custom.audience") for m in client.get("protocolMappers", [])
                     if m["protocolMapper"] == "oidc-audience-mapper"]
        assert audiences == ["order-platform-api"], client["clientId"]
    users = {u["username"]: u for u in realm["users"]}
    for name, role in {"customer1": "customer", "ops1": "ops", "analyst1": "analyst", "admin1": "admin"}.items():
        assert users[name]["realmRoles"] == [role]
