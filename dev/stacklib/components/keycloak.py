"""Keycloak in dev mode with the order-platform realm imported.

The check logs in every test user, runs the browser flow of the web client with PKCE
and the client-credentials grant, and verifies each token's RS256 signature against the
JWKS with pure-Python RSA (no third-party JWT library on a fresh machine).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import urllib.parse
from pathlib import Path

from ..component import Component
from ..config import (AUDIENCE, CACHE_DIR, KEYCLOAK_ADMIN, REALM, REALM_FILE, SERVICE_CLIENT, TEST_CLIENT,
                      TEST_PASSWORD, TEST_USERS, V, WEB_CLIENT, StackError)
from ..fetching import download, maven_url, unpack
from ..tools import find_java, java_home
from ..webclient import http_json, raw_request


class Keycloak(Component):
    name = "keycloak"
    ports = {"port": 58080, "management": 59000}
    start_timeout = 300

    def version(self) -> str:
        return V["KEYCLOAK_VERSION"]

    @property
    def dist(self) -> Path:
        return CACHE_DIR / f"keycloak-{V['KEYCLOAK_VERSION']}"

    def java(self) -> str:
        return find_java(self.name, 17)

    def fetch(self):
        self.java()
        archive = download(maven_url("org.keycloak", "keycloak-quarkus-dist", V["KEYCLOAK_VERSION"], "zip"), self.name)
        unpack(archive, self.dist, self.name, strip_top=True)

    def prepare(self):
        # A per-stack Keycloak home: bin/ and conf/ copied (kc.sh derives the home from its
        # own path), lib/providers/themes linked to the cache, data/ private. The dev-file
        # database is kept between starts (creating it costs ~20 s of start-up) unless the
        # realm file or the version changed; then it is recreated so the realm always
        # matches the repository.
        home = self.home / "home"
        if (home / "bin").exists():
            shutil.rmtree(home / "bin")
        shutil.copytree(self.dist / "bin", home / "bin")
        if not (home / "conf").exists():
            shutil.copytree(self.dist / "conf", home / "conf")
        for sub in ("lib", "providers", "themes"):
            link = home / sub
            if link.is_symlink() and os.readlink(link) != str(self.dist / sub):
                link.unlink()
            if not link.exists():
                link.symlink_to(self.dist / sub)
        stamp = self.home / "realm.stamp"
        if not stamp.exists() or stamp.read_text() != self.realm_stamp():
            stamp.unlink(missing_ok=True)
            shutil.rmtree(home / "data", ignore_errors=True)
        (home / "data" / "import").mkdir(parents=True, exist_ok=True)
        shutil.copy(REALM_FILE, home / "data" / "import" / REALM_FILE.name)

    def start(self) -> None:
        # The first start-dev "augments" the shared install in the cache (~20 s). Two stacks
        # doing that at once would write the same files, so the first start holds a lock
        # until Keycloak is ready (there is no separate build step for dev mode).
        self._augment_lock = None
        marker = self.dist / ".stack-augmented"
        if not marker.exists():
            handle = open(CACHE_DIR / "keycloak-augment.lock", "a+")
            fcntl.flock(handle, fcntl.LOCK_EX)
            if marker.exists():
                handle.close()
            else:
                self._augment_lock = handle
        super().start()

    def wait_ready(self, timeout: float) -> None:
        try:
            super().wait_ready(timeout)
            if getattr(self, "_augment_lock", None):
                (self.dist / ".stack-augmented").write_text(V["KEYCLOAK_VERSION"])
        finally:
            if getattr(self, "_augment_lock", None):
                self._augment_lock.close()   # closing the file releases the lock
                self._augment_lock = None

    def realm_stamp(self) -> str:
        return hashlib.sha1(REALM_FILE.read_bytes() + V["KEYCLOAK_VERSION"].encode()).hexdigest()

    def command(self):
        home = self.home / "home"
        env = {"JAVA_HOME": java_home(self.java()), "JAVA_OPTS_KC_HEAP": "-Xms128m -Xmx768m",
               # C1 only: much less CPU at start-up on small machines; plenty fast for dev.
               "JAVA_OPTS_APPEND": "-XX:TieredStopAtLevel=1",
               "KC_BOOTSTRAP_ADMIN_USERNAME": KEYCLOAK_ADMIN[0], "KC_BOOTSTRAP_ADMIN_PASSWORD": KEYCLOAK_ADMIN[1]}
        return ([str(home / "bin" / "kc.sh"), "start-dev", "--import-realm",
                 f"--http-port={self.port()}", "--http-host=127.0.0.1",
                 f"--http-management-port={self.port('management')}",
                 f"--hostname=http://127.0.0.1:{self.port()}"], env, self.home)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port()}"

    def issuer(self) -> str:
        return f"{self.url()}/realms/{REALM}"

    def ready(self) -> bool:
        ok = http_json("GET", self.issuer() + "/.well-known/openid-configuration", timeout=5)["issuer"] == self.issuer()
        if ok:   # the realm is imported: the database may be reused next time
            (self.home / "realm.stamp").write_text(self.realm_stamp())
        return ok

    def check(self) -> str:
        discovery = http_json("GET", self.issuer() + "/.well-known/openid-configuration")
        if discovery["issuer"] != self.issuer():
            raise StackError(f"issuer is {discovery['issuer']}, expected {self.issuer()}")
        jwks = http_json("GET", discovery["jwks_uri"])
        for username, role in TEST_USERS.items():
            token = http_json("POST", discovery["token_endpoint"], form={
                "grant_type": "password", "client_id": TEST_CLIENT, "username": username,
                "password": TEST_PASSWORD, "scope": "openid"})["access_token"]
            claims = verify_jwt(token, jwks, self.issuer(), AUDIENCE)
            roles = claims.get("realm_access", {}).get("roles", [])
            if role not in roles:
                raise StackError(f"token of {username} lacks realm role {role} (has {roles})")
        self.check_pkce_login(discovery)
        token = http_json("POST", discovery["token_endpoint"], form={
            "grant_type": "client_credentials", "client_id": SERVICE_CLIENT[0],
            "client_secret": SERVICE_CLIENT[1]})["access_token"]
        claims = verify_jwt(token, jwks, self.issuer(), AUDIENCE)
        if "ops" not in claims.get("realm_access", {}).get("roles", []):
            raise StackError("service-account token lacks the ops role")
        return (f"tokens for {', '.join(TEST_USERS)} (password grant), customer1 (browser code flow + PKCE) "
                f"and {SERVICE_CLIENT[0]} (client credentials) verified against JWKS")

    def check_pkce_login(self, discovery: dict) -> None:
        """The browser flow of the public web client: PKCE is required, and a login through
        the HTML form yields a code that the token endpoint exchanges with the verifier."""
        redirect = "http://localhost:3000/callback"
        params = {"client_id": WEB_CLIENT, "response_type": "code", "redirect_uri": redirect, "scope": "openid"}
        status, headers, _ = raw_request(discovery["authorization_endpoint"] + "?" + urllib.parse.urlencode(params))
        if "code_challenge" not in urllib.parse.unquote_plus(headers.get("Location", "")):
            raise StackError(f"{WEB_CLIENT} accepted an authorization request without PKCE (HTTP {status})")
        verifier = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        params.update(code_challenge=challenge, code_challenge_method="S256", state="stack-check")
        status, headers, body = raw_request(discovery["authorization_endpoint"] + "?" + urllib.parse.urlencode(params))
        # Keycloak's cookies are `Secure`; browsers send them to http://localhost anyway,
        # urllib's cookie jar would not, so they are carried by hand.
        cookies = "; ".join(c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or [])
        match = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', body)
        if status != 200 or not match:
            raise StackError(f"login page of {WEB_CLIENT} not served (HTTP {status})")
        status, headers, _ = raw_request(
            match.group(1).replace("&amp;", "&"), {"Cookie": cookies, "Content-Type": "application/x-www-form-urlencoded"},
            urllib.parse.urlencode({"username": "customer1", "password": TEST_PASSWORD}).encode())
        query = urllib.parse.parse_qs(urllib.parse.urlparse(headers.get("Location", "")).query)
        if status != 302 or "code" not in query or query.get("state") != ["stack-check"]:
            raise StackError(f"browser login of customer1 did not redirect with a code (HTTP {status})")
        token = http_json("POST", discovery["token_endpoint"], form={
            "grant_type": "authorization_code", "client_id": WEB_CLIENT, "code": query["code"][0],
            "redirect_uri": redirect, "code_verifier": verifier})["access_token"]
        claims = verify_jwt(token, http_json("GET", discovery["jwks_uri"]), self.issuer(), AUDIENCE)
        if "customer" not in claims.get("realm_access", {}).get("roles", []):
            raise StackError("code-flow token of customer1 lacks the customer role")

    def env(self):
        return {"KEYCLOAK_URL": self.url(), "KEYCLOAK_ADMIN_URL": self.url() + "/admin",
                "KEYCLOAK_ADMIN_USERNAME": KEYCLOAK_ADMIN[0], "KEYCLOAK_ADMIN_PASSWORD": KEYCLOAK_ADMIN[1],
                "KEYCLOAK_REALM": REALM, "OIDC_ISSUER_URL": self.issuer(), "OIDC_AUDIENCE": AUDIENCE,
                "OIDC_SERVICE_CLIENT_ID": SERVICE_CLIENT[0], "OIDC_SERVICE_CLIENT_SECRET": SERVICE_CLIENT[1],
                "OIDC_WEB_CLIENT_ID": WEB_CLIENT, "OIDC_TEST_CLIENT_ID": TEST_CLIENT,
                "OIDC_TEST_USERS": " ".join(TEST_USERS), "OIDC_TEST_PASSWORD": TEST_PASSWORD}


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# DER prefix of DigestInfo(SHA-256) in an RSASSA-PKCS1-v1_5 signature (RFC 8017 §9.2).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def verify_jwt(token: str, jwks: dict, issuer: str, audience: str) -> dict:
    """Verify an RS256 JWT against a JWKS with pure-Python RSA; check iss, aud, exp."""
    header_b64, payload_b64, sig_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    if header.get("alg") != "RS256":
        raise StackError(f"unexpected token alg {header.get('alg')}")
    keys = [k for k in jwks["keys"] if k.get("kid") == header.get("kid") and k.get("kty") == "RSA"]
    if not keys:
        raise StackError(f"no JWKS key with kid {header.get('kid')}")
    n = int.from_bytes(b64url_decode(keys[0]["n"]), "big")
    e = int.from_bytes(b64url_decode(keys[0]["e"]), "big")
    size = (n.bit_length() + 7) // 8
    signature = b64url_decode(sig_b64)
    if len(signature) != size:
        raise StackError("signature length does not match the key")
    decoded = pow(int.from_bytes(signature, "big"), e, n).to_bytes(size, "big")
    digest = hashlib.sha256(f"{header_b64}.{payload_b64}".encode()).digest()
    expected = b"\x00\x01" + b"\xff" * (size - 3 - len(SHA256_DIGEST_INFO) - 32) + b"\x00" + SHA256_DIGEST_INFO + digest
    if decoded != expected:
        raise StackError("token signature does not verify against the JWKS")
    claims = json.loads(b64url_decode(payload_b64))
    if claims.get("iss") != issuer:
        raise StackError(f"token iss {claims.get('iss')} != {issuer}")
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        raise StackError(f"token aud {aud} does not include {audience}")
    if claims.get("exp", 0) < time.time():
        raise StackError("token already expired")
    return claims
