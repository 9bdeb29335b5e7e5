"""Small HTTP helpers for the readiness probes and checks: JSON requests whose failures
become StackError messages, and a raw request that does not follow redirects (for the
Keycloak browser flow)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from .config import StackError


def http_json(method: str, url: str, body=None, headers: dict | None = None, form: dict | None = None,
              timeout: float = 30):
    data = None
    headers = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise StackError(f"{method} {url} -> HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StackError(f"{method} {url} failed: {exc}") from None
    return json.loads(raw) if raw.strip() else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def raw_request(url: str, headers: dict | None = None, data: bytes | None = None):
    """(status, headers, body) without following redirects."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as resp:
            return resp.status, resp.headers, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise StackError(f"GET {url} failed: {exc}") from None
