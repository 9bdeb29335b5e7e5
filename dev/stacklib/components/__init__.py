"""One module per server, and the registry of all of them.

COMPONENTS keeps the order in which `up` starts, `status` lists and `down` (reversed)
stops them; it is also the order of the names in every message.
"""

from __future__ import annotations

from ..component import Component
from .elasticsearch import Elasticsearch
from .jaeger import Jaeger
from .kafka import Kafka
from .keycloak import Keycloak
from .postgres import Postgres
from .prometheus import Prometheus
from .redis import Redis
from .schema_registry import SchemaRegistry

COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Postgres(), Kafka(), SchemaRegistry(), Elasticsearch(), Keycloak(), Redis(), Prometheus(), Jaeger())}
