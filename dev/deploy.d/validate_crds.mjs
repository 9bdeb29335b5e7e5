// Validates custom resources against their CRDs' OpenAPI schemas, as compiled into the
// @kubernetes-models packages of package.json (dev/deploy_check runs it).
//
//   node validate_crds.mjs NODE_MODULES_DIR < objects.json
//
// stdin: a JSON array of {"source": "...", "object": {...}}. stdout: a JSON array with one
// entry per object: {"source", "kind", "error": null | "message" | "no schema"}.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// API group → the package whose models hold its kinds.
const PACKAGES = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "argoproj.io": "@kubernetes-models/argo-cd",
};

const nodeModules = process.argv[2];
const items = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const { source, object } of items) {
  const [group, version] = object.apiVersion.split("/");
  const pkg = PACKAGES[group];
  const result = { source, kind: object.kind, error: null };
  if (!pkg) {
    result.error = "no schema";
  } else {
    // A file URL, not the package's export map: the packages export ESM only, by subpath.
    const file = join(nodeModules, pkg, group, version, `${object.kind}.js`);
    try {
      const module = await import(pathToFileURL(file).href);
      new module[object.kind](object).validate();
    } catch (e) {
      result.error = e.code === "ERR_MODULE_NOT_FOUND" ? "no schema" : String(e.message || e);
    }
  }
  results.push(result);
}
process.stdout.write(JSON.stringify(results));
