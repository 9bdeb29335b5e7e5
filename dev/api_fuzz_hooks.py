"""Schemathesis hooks for dev/api_fuzz: the few rules of the API that OpenAPI
cannot state, applied to generated requests so that every check stays on.

Each hook below names one such rule. None of them loosens a check: they only
complete a schema-valid (positive) request into one that is valid for the rule
the schema cannot express, or drop one failure that HTTP itself rules out.
A negative request is never touched except where noted, so what the schema
forbids is still sent and must still be refused.

- Idempotency-Key: a key is valid once per request body; re-sending a valid key
  with another body is 422 by design (DESIGN.md §4.1). Generated valid keys are
  made unique (a random prefix keeps them valid).
- X-Consistency-Token: only tokens that commands returned are meaningful: a
  generated one names another event store (400 by design, §5) or a position
  the log may never reach (the query then waits and answers 503, §4.3). Valid
  generated tokens become "<this server's store>:0" (the start of the log,
  always covered), so the header is still parsed.
- cursor: opaque, only values the server issued are cursors (anything else is
  400 by design). Positive requests drop a generated cursor.
- GET /orders/{id}/at: exactly one of version and time (400 otherwise); OpenAPI
  has no way to say "exactly one of two parameters". Positive requests keep
  version when both are drawn, and ask for version 1 when neither is.
- POST /orders: at most one line per SKU (422 otherwise); JSON Schema cannot say
  "unique by this property". Positive requests get their repeated SKUs made
  distinct.
- POST /orders/{id}/items: the unit price may have as many fraction digits as
  the *order's* currency has, which the request does not carry. The currency of
  every order created during the run is remembered, and a positive request's
  price is cut to it.
- Amounts are 64-bit minor units: a price or an order total past
  9223372036854775807 of them is 422, never wrapped (DESIGN.md §3.1). That bounds
  a sum over lines, which JSON Schema cannot state; positive requests keep at
  most 9 significant digits before the decimal point (100 lines of 10000 then
  stay far below the limit).
- Unknown headers: HTTP requires recipients to ignore header fields they do not
  recognise (RFC 9110 §5.1), so the "unexpected header" negative case cannot be
  refused by any server; that one failure is dropped.
"""

import os
import re
import secrets

import schemathesis
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario

IDEMPOTENCY_KEY = re.compile(r"^[!-~]{1,255}$")
CONSISTENCY_TOKEN = re.compile(r"^[0-9a-f]{32}:[0-9]{1,19}$")

# Order id -> currency code, learnt from successful creates.
CURRENCIES: dict[str, str] = {}
# Fraction digits of the currencies whose exponent is not 2 (DESIGN.md §3.1).
EXPONENTS = {
    "CLP": 0, "ISK": 0, "JPY": 0, "KRW": 0, "UGX": 0, "VND": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}


def _is_positive(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _header(headers, name):
    for key in list(headers or {}):
        if key.lower() == name.lower():
            return key
    return None


def _unique_key(key: str) -> str:
    # Not `random`: Hypothesis reseeds it for every example, so it would repeat.
    return (secrets.token_hex(12) + key)[:255]


def _distinct_skus(items) -> None:
    seen = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("sku"), str):
            continue
        # Generated lists may hold one object twice: change a copy.
        item = items[i] = dict(item)
        sku = item["sku"]
        n = i
        while sku in seen:
            sku = f"{n}~{item['sku']}"[:64]
            n += len(items)
        item["sku"] = sku
        seen.add(sku)


def _moderate(price):
    """The price with at most 9 significant digits before the point."""
    if not isinstance(price, str):
        return price
    whole, dot, fraction = price.partition(".")
    significant = whole.lstrip("0")
    if len(significant) <= 9:
        return price
    return significant[:9] + dot + fraction


def _price_for(price: str, currency: str) -> str:
    exponent = EXPONENTS.get(currency, 2)
    whole, _, fraction = price.partition(".")
    fraction = fraction[:exponent]
    cut = whole if not fraction else f"{whole}.{fraction}"
    # Cutting "0.005" to two digits leaves zero, which is not a price.
    return cut if any(c in "123456789" for c in cut) else "1"


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers if case.headers is not None else {}
    key = _header(headers, "Idempotency-Key")
    if key and isinstance(headers[key], str) and IDEMPOTENCY_KEY.match(headers[key]):
        headers[key] = _unique_key(headers[key])
    token = _header(headers, "X-Consistency-Token")
    if token and isinstance(headers[token], str) and CONSISTENCY_TOKEN.fullmatch(headers[token]):
        headers[token] = f"{os.environ['API_FUZZ_STORE_ID']}:0"

    if not _is_positive(case):
        return
    operation = case.operation
    query = case.query if case.query is not None else {}
    if operation.method.upper() == "GET" and "cursor" in query:
        del query["cursor"]
    if operation.method.upper() == "GET" and operation.path.endswith("/at"):
        if "version" in query and "time" in query:
            del query["time"]
        elif "version" not in query and "time" not in query:
            query["version"] = 1
        case.query = query
    body = case.body
    if operation.method.upper() == "POST" and operation.path == "/api/v1/orders":
        if isinstance(body, dict) and isinstance(body.get("items"), list):
            _distinct_skus(body["items"])
            for item in body["items"]:
                if isinstance(item, dict) and "unitPrice" in item:
                    item["unitPrice"] = _moderate(item["unitPrice"])
    if operation.method.upper() == "POST" and operation.path.endswith("/items"):
        order_id = str((case.path_parameters or {}).get("id", ""))
        currency = CURRENCIES.get(order_id)
        if isinstance(body, dict) and isinstance(body.get("unitPrice"), str):
            body["unitPrice"] = _moderate(body["unitPrice"])
            if currency:
                body["unitPrice"] = _price_for(body["unitPrice"], currency)


@schemathesis.hook
def after_call(context, case, response):
    if response.status_code != 201:
        return
    try:
        order = response.json()
    except ValueError:
        return
    if isinstance(order, dict) and isinstance(order.get("orderId"), str):
        CURRENCIES[order["orderId"]] = order.get("currency", "")


@schemathesis.hook
def filter_failure(context, failure, case, response):
    data = case.meta.phase.data if case.meta is not None else None
    unknown_header = (
        isinstance(data, CoveragePhaseData)
        and data.scenario == CoverageScenario.OBJECT_UNEXPECTED_PROPERTIES
        and any("unknown-property" in name.lower() for name in (case.headers or {}))
    )
    return not unknown_header
