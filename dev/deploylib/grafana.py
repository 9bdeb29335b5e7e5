"""Grafana: the dashboards, the provisioning files that load them, and the Prometheus of
docker-compose.yml that they read. Grafana itself cannot run here, so these are the ways the
files can drift apart that Grafana would only show as an empty folder or "No data"."""

import json
import re
from pathlib import Path
from urllib.parse import urlparse

from .common import ROOT, Results, output_problems, run
from .tools import promtool

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVIDERS = GRAFANA / "provisioning" / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
# Where the Grafana image reads provisioning files (its GF_PATHS_PROVISIONING).
PROVISIONING_IN_IMAGE = "/etc/grafana/provisioning"

# The keys Grafana's file provisioning reads ("Provision Grafana" in Grafana's documentation).
# Grafana ignores a key it does not know, so a misspelt one (allowUIUpdates) would silently
# leave the default: refuse unknown keys instead.
PROVIDER_KEYS = {"name", "orgId", "folder", "folderUid", "type", "disableDeletion",
                 "updateIntervalSeconds", "allowUiUpdates", "options"}
PROVIDER_OPTIONS = {"path", "foldersFromFilesStructure"}
DATASOURCE_KEYS = {"name", "type", "access", "orgId", "uid", "url", "user", "database", "basicAuth",
                   "basicAuthUser", "withCredentials", "isDefault", "jsonData", "secureJsonData",
                   "version", "editable"}
# Grafana's own pseudo data sources, which need nothing provisioned.
GRAFANA_PSEUDO_UIDS = ("grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --")
# Grafana's limit on a dashboard uid, and the characters it keeps in URLs.
UID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def load_compose() -> dict:
    import yaml
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text()) or {}


def mounts(service: dict) -> dict[str, tuple[Path, bool]]:
    """Container path -> (host path, read-only) of a compose service's bind mounts."""
    found = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume.get("target", "")
            ro = volume.get("read_only", False)
        else:
            parts = volume.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else ""
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
        if source.startswith((".", "/")):
            found[target.rstrip("/")] = ((ROOT / source).resolve(), ro)
    return found


def host_path(service: dict, container_path: str) -> tuple[Path | None, bool]:
    """What a container path is on the host: the deepest bind mount holding it."""
    container_path = container_path.rstrip("/")
    best = None
    for target, (source, ro) in mounts(service).items():
        if container_path == target or container_path.startswith(target + "/"):
            if best is None or len(target) > len(best[0]):
                best = (target, source, ro)
    if best is None:
        return None, False
    return best[1] / container_path[len(best[0]):].lstrip("/"), best[2]


def flag(command, name: str, default: str | None = None) -> str | None:
    """The value of `--name=value` (or `--name value`) in a compose command."""
    args = command.split() if isinstance(command, str) else list(command or [])
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
    return default


def load_yaml(path: Path, problems: list[str]):
    import yaml
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        problems.append(f"{path.relative_to(ROOT)}: {e}")
        return None


def provisioning_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix in (".yaml", ".yml"))


# ---- the data source -------------------------------------------------------------------------


def default_datasource(problems: list[str]) -> dict | None:
    """The default data source of deploy/grafana/provisioning/datasources, checked for shape."""
    datasources = []
    files = provisioning_files(DATASOURCES)
    if not files:
        problems.append(f"no data source file in {DATASOURCES.relative_to(ROOT)}")
    for path in files:
        doc = load_yaml(path, problems)
        if doc is None:
            continue
        name = path.relative_to(ROOT)
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            problems.append(f"{name}: apiVersion must be 1")
            continue
        for ds in doc.get("datasources") or []:
            unknown = sorted(set(ds) - DATASOURCE_KEYS)
            if unknown:
                problems.append(f"{name}: data source {ds.get('name')}: keys Grafana does not read: "
                                f"{', '.join(unknown)}")
            for key in ("name", "type", "uid", "url"):
                if not ds.get(key):
                    problems.append(f"{name}: data source {ds.get('name')}: no {key}")
            datasources.append(ds)
    defaults = [ds for ds in datasources if ds.get("isDefault") is True]
    if len(defaults) != 1:
        problems.append(f"{len(defaults)} data sources have isDefault: true; the dashboards' "
                        "`datasource` variable starts on the default one, so exactly one must")
        return None
    if defaults[0].get("type") != "prometheus":
        problems.append(f"the default data source {defaults[0].get('name')} is of type "
                        f"{defaults[0].get('type')}, not prometheus")
    return defaults[0]


# ---- the dashboards ---------------------------------------------------------------------------


def datasource_refs(node, where: str):
    """Every `datasource` value anywhere in a dashboard (panels, targets, rows, annotations,
    variables), with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}"
            if key == "datasource":
                yield here, value
            else:
                yield from datasource_refs(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            title = item.get("title") if isinstance(item, dict) else None
            yield from datasource_refs(item, f"{where}[{title or i}]")


def check_dashboards(results: Results) -> None:
    problems = []
    # Its own problems are the data source check's (check_provisioning), not repeated here.
    datasource = default_datasource([])
    ds_type = (datasource or {}).get("type", "prometheus")
    ds_uid = (datasource or {}).get("uid")
    files = sorted(DASHBOARDS.glob("*.json"))
    if not files:
        problems.append(f"no dashboards in {DASHBOARDS.relative_to(ROOT)}")
    uids, titles = {}, {}
    for path in files:
        name = path.name
        try:
            dash = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            problems.append(f"{name}: not valid JSON: {e}")
            continue
        if not isinstance(dash, dict):
            problems.append(f"{name}: not a dashboard (a JSON object)")
            continue
        uid, title = dash.get("uid"), dash.get("title")
        if not isinstance(uid, str) or not UID_RE.match(uid):
            problems.append(f"{name}: uid {uid!r}: needs one of at most 40 letters, digits, - or _ "
                            "(a fixed uid keeps the dashboard's URL across reloads)")
        elif uid in uids:
            problems.append(f"{name}: uid {uid} is also the uid of {uids[uid]}")
        else:
            uids[uid] = name
        # One provider folder holds them all, and Grafana refuses two titles in one folder.
        if not title:
            problems.append(f"{name}: no title")
        elif title in titles:
            problems.append(f"{name}: title {title!r} is also the title of {titles[title]}")
        else:
            titles[title] = name
        # The data source variables: only of the provisioned data source's type.
        variables = {}
        for var in (dash.get("templating") or {}).get("list") or []:
            if var.get("type") == "datasource":
                variables[var.get("name")] = var.get("query")
                if var.get("query") != ds_type:
                    problems.append(f"{name}: variable {var.get('name')} picks data sources of type "
                                    f"{var.get('query')!r}; the provisioned one is {ds_type!r}")
        for where, ref in datasource_refs(dash.get("panels") or [], "panels"):
            problems += reference_problems(name, where, ref, variables, ds_type, ds_uid)
        for key in ("annotations", "templating"):
            for where, ref in datasource_refs(dash.get(key) or {}, key):
                problems += reference_problems(name, where, ref, variables, ds_type, ds_uid)
    results.check(f"Grafana dashboards ({len(files)}): valid JSON, unique uids and titles, only the "
                  f"provisioned {ds_type} data source (uid {ds_uid}) or a variable it satisfies",
                  problems)


def reference_problems(name: str, where: str, ref, variables: dict, ds_type: str,
                       ds_uid: str | None) -> list[str]:
    if isinstance(ref, dict) and ref.get("uid") in GRAFANA_PSEUDO_UIDS:
        return []
    if not isinstance(ref, dict):
        return [f"{name} {where}: datasource {ref!r}: a name, which only matches a data source "
                "called that; use {\"type\": ..., \"uid\": \"${datasource}\"}"]
    uid = str(ref.get("uid", ""))
    variable = re.fullmatch(r"\$\{?(\w+)\}?", uid)
    if ref.get("type") not in (None, ds_type):
        return [f"{name} {where}: data source type {ref.get('type')!r}; only {ds_type!r} is "
                "provisioned"]
    if variable:
        if variable.group(1) not in variables:
            return [f"{name} {where}: uid {uid}: no data source variable {variable.group(1)} in "
                    f"templating (it has {', '.join(sorted(variables)) or 'none'})"]
        return []
    if uid != ds_uid:
        return [f"{name} {where}: uid {uid!r} is not the provisioned data source ({ds_uid}) nor a "
                "data source variable"]
    return []


# ---- provisioning, as compose runs it ----------------------------------------------------------


def check_provisioning(results: Results) -> None:
    compose = load_compose()
    services = compose.get("services") or {}
    grafana = services.get("grafana")
    prometheus = services.get("prometheus") or {}

    # The dashboard provider: its path is where compose mounts deploy/grafana/dashboards.
    problems, paths = [], []
    files = provisioning_files(PROVIDERS)
    if not files:
        problems.append(f"no dashboard provider file in {PROVIDERS.relative_to(ROOT)}")
    for path in files:
        doc = load_yaml(path, problems)
        if doc is None:
            continue
        name = path.relative_to(ROOT)
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            problems.append(f"{name}: apiVersion must be 1")
            continue
        for provider in doc.get("providers") or []:
            label = f"{name}: provider {provider.get('name')}"
            unknown = sorted(set(provider) - PROVIDER_KEYS) + \
                sorted(f"options.{k}" for k in set(provider.get("options") or {}) - PROVIDER_OPTIONS)
            if unknown:
                problems.append(f"{label}: keys Grafana does not read: {', '.join(unknown)}")
            if not provider.get("name"):
                problems.append(f"{label}: no name")
            if provider.get("type", "file") != "file":
                problems.append(f"{label}: type {provider.get('type')}, not file")
            options = provider.get("options") or {}
            if options.get("foldersFromFilesStructure") and \
                    (provider.get("folder") or provider.get("folderUid")):
                problems.append(f"{label}: foldersFromFilesStructure with a folder (Grafana refuses "
                                "both)")
            if provider.get("allowUiUpdates") is not False:
                problems.append(f"{label}: allowUiUpdates must be false (the files are the truth)")
            if not options.get("path"):
                problems.append(f"{label}: no options.path")
            else:
                paths.append((label, options["path"]))
    if grafana is None:
        problems.append("docker-compose.yml has no grafana service")
    else:
        for folder in (PROVIDERS, DATASOURCES):
            inside = f"{PROVISIONING_IN_IMAGE}/{folder.name}"
            source, ro = host_path(grafana, inside)
            if source != folder.resolve():
                problems.append(f"docker-compose.yml grafana: {inside} is {source or 'not mounted'}, "
                                f"not {folder.relative_to(ROOT)}: Grafana would not read it")
            elif not ro:
                problems.append(f"docker-compose.yml grafana: mount {inside} read-only (:ro)")
        for label, inside in paths:
            source, ro = host_path(grafana, inside)
            if source is None or not source.exists() or source.resolve() != DASHBOARDS.resolve():
                problems.append(f"{label}: options.path {inside} is {source or 'not mounted'} in "
                                f"docker-compose.yml's grafana, not {DASHBOARDS.relative_to(ROOT)}")
            elif not ro:
                problems.append(f"docker-compose.yml grafana: mount {inside} read-only (:ro)")
    results.check("Grafana dashboard provider: its options.path is where docker-compose.yml mounts "
                  "deploy/grafana/dashboards; provisioning folders mounted", problems)

    # The data source: a default Prometheus, at the address where compose's Prometheus listens.
    problems = []
    datasource = default_datasource(problems)
    if datasource and grafana is not None:
        url = urlparse(str(datasource.get("url", "")))
        listen = flag(prometheus.get("command"), "web.listen-address", "0.0.0.0:9090")
        host, _, port = listen.rpartition(":")
        if grafana.get("network_mode") == "host":
            # Both on the host's network: the URL is Prometheus's own listen address.
            reachable = {f"127.0.0.1:{port}", f"localhost:{port}"} \
                if host in ("", "0.0.0.0", "[::]") else {listen}
            if prometheus.get("network_mode") != "host":
                problems.append("docker-compose.yml: grafana uses the host's network, prometheus does "
                                f"not: {datasource.get('url')} would not reach it")
            elif url.netloc not in reachable:
                problems.append(f"data source url {datasource.get('url')}: compose's Prometheus "
                                f"listens on {listen}")
        elif url.netloc != f"prometheus:{port}":
            problems.append(f"data source url {datasource.get('url')}: on compose's network "
                            f"Prometheus is http://prometheus:{port}")
        config_path, _ = host_path(prometheus, flag(prometheus.get("command"), "config.file",
                                                     "/etc/prometheus/prometheus.yml"))
        config = load_yaml(config_path, problems) if config_path and config_path.is_file() else None
        scrape = str(((config or {}).get("global") or {}).get("scrape_interval", "1m"))
        interval = (datasource.get("jsonData") or {}).get("timeInterval")
        if interval is not None and str(interval) != scrape:
            problems.append(f"data source jsonData.timeInterval {interval}: Prometheus scrapes every "
                            f"{scrape} ({config_path.relative_to(ROOT) if config_path else '?'})")
    results.check("Grafana data source: one default Prometheus with a uid, at docker-compose.yml's "
                  "Prometheus, its scrape interval", problems)


def check_compose_prometheus(results: Results) -> None:
    """compose's Prometheus scrapes each production service where it listens."""
    import yaml
    services = load_compose().get("services") or {}
    prometheus = services.get("prometheus")
    if prometheus is None:
        results.check("docker-compose.yml prometheus", ["no prometheus service"])
        return
    inside = flag(prometheus.get("command"), "config.file", "/etc/prometheus/prometheus.yml")
    config_path, _ = host_path(prometheus, inside)
    if config_path is None or not config_path.is_file():
        results.check("docker-compose.yml prometheus: its configuration",
                      [f"{inside} is not a file mounted from the repository"])
        return
    name = config_path.relative_to(ROOT)
    results.check(f"{name}: promtool check config",
                  output_problems(run([promtool(), "check", "config", config_path])))
    config = yaml.safe_load(config_path.read_text()) or {}
    jobs = {}
    for job in config.get("scrape_configs") or []:
        jobs[job.get("job_name")] = {target for sc in job.get("static_configs") or []
                                     for target in sc.get("targets") or []}
    problems, scraped = [], []
    for service_name, service in services.items():
        if not (str(service.get("image", "")).startswith("order-platform") or "build" in service):
            continue
        listen = str((service.get("environment") or {}).get("ORDER_PLATFORM_LISTEN", ""))
        if not listen:
            problems.append(f"{service_name}: no ORDER_PLATFORM_LISTEN, so no known port to scrape")
            continue
        host, _, port = listen.rpartition(":")
        if "host" not in (service.get("network_mode"), prometheus.get("network_mode")):
            want = f"{service_name}:{port}"   # both on compose's network: the service's name
        else:
            want = f"127.0.0.1:{port}" if host in ("0.0.0.0", "[::]") else listen
        # The job label is the service's name: the dashboards and alert rules group by it.
        if jobs.get(service_name) != {want}:
            problems.append(f"{name}: job {service_name} should scrape exactly {want} (its "
                            f"ORDER_PLATFORM_LISTEN is {listen}); it scrapes "
                            f"{', '.join(sorted(jobs.get(service_name) or [])) or 'nothing'}")
        if service.get("network_mode") == "host" and host.startswith("127.") \
                and prometheus.get("network_mode") != "host":
            problems.append(f"{service_name} listens on the host's loopback ({listen}): prometheus "
                            "must use the host's network too (network_mode: host) to reach it")
        scraped.append(f"{service_name} {want}")
    results.check(f"docker-compose.yml prometheus scrapes the production services where they listen "
                  f"({', '.join(scraped)})", problems)
