"""Apicurio Registry with in-memory storage; clients use its Confluent-compatible API."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

from ..component import Component
from ..config import CACHE_DIR, V, StackError
from ..fetching import download, maven_url, unpack
from ..tools import find_java
from ..webclient import http_json


class SchemaRegistry(Component):
    name = "schema-registry"
    ports = {"port": 58081, "management": 59001}
    start_timeout = 180

    def version(self) -> str:
        return V["APICURIO_VERSION"]

    @property
    def dist(self) -> Path:
        return CACHE_DIR / f"apicurio-registry-{V['APICURIO_VERSION']}"

    def fetch(self):
        self.java()
        archive = download(maven_url("io.apicurio", "apicurio-registry-app", V["APICURIO_VERSION"], "tar.gz", "all"),
                           self.name)
        unpack(archive, self.dist, self.name, strip_top=False)

    def java(self) -> str:
        # Apicurio Registry 3.3 is compiled for Java 21 (class file version 65).
        return find_java(self.name, 21)

    def command(self):
        jar = next(self.dist.rglob("quarkus-run.jar"))
        return ([self.java(), "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                 f"-Dquarkus.http.port={self.port()}", "-Dquarkus.http.host=127.0.0.1",
                 f"-Dquarkus.management.port={self.port('management')}", "-Dquarkus.management.host=127.0.0.1",
                 "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
                 "-Dquarkus.log.level=INFO", "-jar", str(jar)], {}, self.home)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port()}/apis/ccompat/v7"

    def ready(self) -> bool:
        return isinstance(http_json("GET", self.url() + "/subjects", timeout=3), list)

    def check(self) -> str:
        subject = f"stack-check-{uuid.uuid4().hex[:8]}-value"
        schema = {"type": "record", "name": "StackCheck", "namespace": "dev.stack",
                  "fields": [{"name": "id", "type": "string"},
                             {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                                          "precision": 12, "scale": 2}}]}
        headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
        created = http_json("POST", f"{self.url()}/subjects/{subject}/versions",
                            body={"schema": json.dumps(schema), "schemaType": "AVRO"}, headers=headers)
        schema_id = created.get("id")
        if schema_id is None:
            raise StackError(f"register returned no id: {created}")
        fetched = http_json("GET", f"{self.url()}/schemas/ids/{schema_id}")
        if json.loads(fetched["schema"]).get("name") != "StackCheck":
            raise StackError(f"fetched schema differs: {fetched}")
        with contextlib.suppress(StackError):
            http_json("DELETE", f"{self.url()}/subjects/{subject}")
        return f"registered and fetched Avro schema id {schema_id}"

    def env(self):
        return {"SCHEMA_REGISTRY_URL": self.url(),
                "APICURIO_REGISTRY_URL": f"http://127.0.0.1:{self.port()}/apis/registry/v3"}
