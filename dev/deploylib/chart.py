"""The Helm chart (lint, render, Kubernetes and CRD schemas, what each container is given)
and the Argo CD Applications."""

import json
import re
import subprocess
from pathlib import Path

from .common import (CHART, DEPLOY_D, ENVIRONMENTS, KUBE_VERSION, ROOT, Results,
                     output_problems, run)
from .settings import env_problems, value_problems


def check_chart(results: Results, helm_bin: Path, models: Path | None, helps: dict,
                bin_path: Path, versions: list[str]) -> None:
    import yaml
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    cargo_version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    results.check("chart appVersion is the Cargo workspace version (the default image tag)",
                  [] if chart_version == cargo_version else
                  [f"Chart.yaml appVersion {chart_version}, Cargo.toml version {cargo_version}"])
    for environment in ENVIRONMENTS:
        values = CHART / f"values-{environment}.yaml"
        p = run([helm_bin, "lint", "--strict", "--kube-version", KUBE_VERSION, CHART, "-f", values])
        results.check(f"helm lint --strict ({environment})", output_problems(p))
        problems, objects = render(helm_bin, environment)
        results.check(f"helm template ({environment}): {len(objects)} objects", problems)
        if not objects:
            continue
        named = [(f"{o['kind']}/{o['metadata']['name']}", o) for o in objects]
        problems, custom = validate_core(named, versions)
        core = sorted({o["kind"] for _, o in named} - {o["kind"] for _, o in custom})
        results.check(f"chart ({environment}): {', '.join(core)} valid for Kubernetes "
                      f"{versions[0]}{'..' + versions[-1] if len(versions) > 1 else ''}", problems)
        validate_custom(results, f"chart ({environment})", custom, models)
        check_chart_env(results, environment, objects, helps, bin_path)
        check_chart_dashboards(results, environment, objects)


def render(helm_bin: Path, environment: str) -> tuple[list[str], list[dict]]:
    import yaml
    values = CHART / f"values-{environment}.yaml"
    p = run([helm_bin, "template", "order-platform", CHART, "--namespace",
             f"order-platform-{environment}", "--kube-version", KUBE_VERSION, "-f", values])
    if p.returncode != 0:
        return output_problems(p), []
    return [], [d for d in yaml.safe_load_all(p.stdout) if d]


def validate_core(objects: list[tuple[str, dict]], versions: list[str]) -> tuple[list[str], list]:
    """Kubernetes' own kinds against its schemas; returns problems and the custom resources."""
    import kubernetes_validate as kv
    problems, custom = [], []
    for source, obj in objects:
        for version in versions:
            try:
                kv.validate(obj, version, strict=True)
            except kv.SchemaNotFoundError:
                custom.append((source, obj))
                break
            except kv.ValidationError as e:
                where = "/".join(str(p) for p in e.path)
                problems.append(f"{source}: Kubernetes {version}: {where}: {e.message}")
    return problems, custom


def validate_custom(results: Results, label: str, custom: list, models: Path | None) -> None:
    if not custom:
        return
    kinds = ", ".join(sorted({o["kind"] for _, o in custom}))
    if models is None:
        results.skip(f"{label}: {kinds} against their CRD schemas",
                     "node and npm are not installed (Debian packages nodejs, npm)")
        return
    items = [{"source": s, "object": o} for s, o in custom]
    p = subprocess.run(["node", str(DEPLOY_D / "validate_crds.mjs"), str(models)],
                       input=json.dumps(items), capture_output=True, text=True)
    if p.returncode != 0:
        results.check(f"{label}: {kinds} against their CRD schemas", output_problems(p))
        return
    outcome = json.loads(p.stdout)
    unknown = sorted({r["kind"] for r in outcome if r["error"] == "no schema"})
    problems = [f"{r['source']}: {r['error']}" for r in outcome if r["error"] not in (None, "no schema")]
    checked = sorted({r["kind"] for r in outcome if r["error"] != "no schema"})
    if checked:
        results.check(f"{label}: {', '.join(checked)} against their CRD schemas", problems)
    if unknown:
        results.skip(f"{label}: {', '.join(unknown)}", "no schema for these kinds")


def check_chart_env(results: Results, environment: str, objects: list[dict], helps: dict,
                    bin_path: Path) -> None:
    by_kind_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    for deploy in (o for o in objects if o["kind"] == "Deployment"):
        pod = deploy["spec"]["template"]["spec"]
        for container in pod["containers"]:
            subcommand = (container.get("args") or ["serve"])[0]
            # name -> value; None for a value kept in a Secret made outside the chart.
            values, problems = {}, []
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                found = by_kind_name.get((kind, ref["name"]))
                if found is None:
                    problems.append(f"envFrom {kind} {ref['name']} is not part of the chart")
                    continue
                data = dict(found.get("data") or {}, **(found.get("stringData") or {}))
                values.update({source.get("prefix", "") + k: v for k, v in data.items()})
            for e in container.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                secret = ref and by_kind_name.get(("Secret", ref["name"]))
                data = (secret.get("stringData") or secret.get("data") or {}) if secret else {}
                if secret and ref["key"] not in data:
                    # An optional key may be absent: Kubernetes then leaves the variable unset.
                    if ref.get("optional") is True:
                        continue
                    problems.append(f"{e['name']}: Secret {ref['name']} has no key {ref['key']}")
                values[e["name"]] = e.get("value") if not ref else data.get(ref["key"])
            problems += env_problems(subcommand, set(values), helps)
            if helps.get(subcommand) is not None and not problems:
                problems += value_problems(bin_path, subcommand, values)
            listen = next((o["data"].get("ORDER_PLATFORM_LISTEN") for o in objects
                           if o["kind"] == "ConfigMap" and "ORDER_PLATFORM_LISTEN" in o.get("data", {})
                           and o["metadata"]["name"] == deploy["metadata"]["name"]), None)
            ports = {str(p["containerPort"]) for p in container.get("ports", [])}
            host, _, port = (listen or "").rpartition(":")
            if host not in ("0.0.0.0", "[::]") or port not in ports:
                problems.append(f"ORDER_PLATFORM_LISTEN={listen}: must be 0.0.0.0:<containerPort> "
                                f"({', '.join(sorted(ports))}); the defaults are loopback")
            where = f"chart ({environment}) {deploy['metadata']['name']}"
            label = f"{where}: variables of `{subcommand}` (names, values, required)"
            if helps.get(subcommand) is None:
                results.skip(f"{where}: names and values of `{subcommand}`'s variables",
                             f"the binary has no `{subcommand}` subcommand yet")
                label = f"{where}: required settings of `{subcommand}`"
            results.check(label, problems)


def check_argocd(results: Results, models: Path | None) -> None:
    import yaml
    argo, problems = [], []
    for path in sorted((ROOT / "deploy" / "argocd").glob("*.yaml")):
        for obj in (d for d in yaml.safe_load_all(path.read_text()) if d):
            argo.append((f"{path.name}: {obj['kind']}/{obj['metadata']['name']}", obj))
            source = obj.get("spec", {}).get("source", {})
            chart_dir = ROOT / source.get("path", "")
            for values in source.get("helm", {}).get("valueFiles", []):
                if not (chart_dir / values).is_file():
                    problems.append(f"{path.name}: {source.get('path')}/{values} does not exist")
    results.check("deploy/argocd: chart paths and values files exist", problems)
    validate_custom(results, "deploy/argocd", argo, models)


def check_chart_dashboards(results: Results, environment: str, objects: list[dict]) -> None:
    """grafanaDashboards: one ConfigMap per deploy/grafana/dashboards file, with the sidecar's
    label, holding the file unchanged (the chart reads them through its files/dashboards link)."""
    import yaml
    values = {}
    for path in (CHART / "values.yaml", CHART / f"values-{environment}.yaml"):
        values.update((yaml.safe_load(path.read_text()) or {}).get("grafanaDashboards") or {})
    label, value = values.get("label"), str(values.get("labelValue"))
    labelled = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"
                and label in (o["metadata"].get("labels") or {})}
    if not values.get("enabled"):
        results.check(f"chart ({environment}): no dashboard ConfigMaps (grafanaDashboards off)",
                      [f"ConfigMap/{n} carries {label}" for n in sorted(labelled)])
        return
    problems = []
    files = {p.name: p.read_text() for p in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")}
    carried = {}
    for name, cm in sorted(labelled.items()):
        if cm["metadata"]["labels"][label] != value:
            problems.append(f"ConfigMap/{name}: {label}={cm['metadata']['labels'][label]}, the sidecar "
                            f"looks for {value}")
        for key, text in (cm.get("data") or {}).items():
            if key in carried:
                problems.append(f"{key} is in ConfigMap/{carried[key]} and ConfigMap/{name}")
            carried[key] = name
            if key not in files:
                problems.append(f"ConfigMap/{name}: {key} is not a file of deploy/grafana/dashboards")
            elif text != files[key]:
                problems.append(f"ConfigMap/{name}: {key} differs from deploy/grafana/dashboards/{key}")
        if len(cm.get("data") or {}) != 1:
            problems.append(f"ConfigMap/{name}: {len(cm.get('data') or {})} data keys, one dashboard each")
    for missing in sorted(set(files) - set(carried)):
        problems.append(f"deploy/grafana/dashboards/{missing} is in no ConfigMap labelled {label}")
    results.check(f"chart ({environment}): one ConfigMap per dashboard ({len(files)}), labelled "
                  f"{label}={value}, the JSON unchanged", problems)
