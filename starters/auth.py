"""API authentication and per-mission authorisation.

OIDC mode (settings.auth_mode == "oidc"): every request carries a bearer access
token issued by the Keycloak realm; it is verified locally (RS256 signature
against the realm's JWKS, fetched with httpx and cached; issuer; audience =
settings.keycloak_audience; expiry; typ "Bearer").

Roles (realm roles, or client roles of the audience client) map to permissions:
  platform-admin        every mission: read, write, admin; activates missions
  mission:<id>:reader   read mission <id> (list, status, results)
  mission:<id>:writer   read + write (ingest, research, cancel)
  mission:<id>:admin    read + write + admin

OIDC is the default. An OIDC configuration without STRATMASTER_KEYCLOAK_URL
refuses to start: there is no unauthenticated fallback.

Dev mode (settings.auth_mode == "dev", only when set explicitly, e.g. by
`stratmaster dev up`): no token; the caller is the platform admin "dev". Only for
a server bound to loopback answering loopback clients directly: the app refuses
to start with a non-loopback bind_host, logs a warning at start, and refuses
every request that arrives on or from a non-loopback address, that carries any
proxy header (Forwarded, Via, X-Forwarded-*, X-Real-IP, ...), names a
non-loopback Host (DNS rebinding) or comes from a non-loopback browser Origin.
A tunnel that hides all of that (`ssh -L`, `kubectl port-forward`) cannot be
detected: never tunnel to a dev-mode API.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Final, Literal

import httpx
import jwt
from fastapi import HTTPException, Request
from fastapi.security import HTTPBearer

from stratmaster.settings import Settings

log = logging.getLogger("stratmaster.api.auth")

PLATFORM_ADMIN = "platform-admin"
Permission = Literal["read", "write", "admin"]
READ: Final = "read"
WRITE: Final = "write"
ADMIN: Final = "admin"
_LEVELS: dict[str, set[Permission]] = {"reader": {READ}, "writer": {READ, WRITE}, "admin": {READ, WRITE, ADMIN}}
AUTH_MODES = ("dev", "oidc")
# Headers a reverse proxy or load balancer adds: dev mode answers none of them.
PROXY_HEADERS = frozenset({
    "forwarded", "via", "x-real-ip", "x-client-ip", "client-ip", "true-client-ip", "cf-connecting-ip",
    "fastly-client-ip", "x-cluster-client-ip", "x-original-forwarded-for", "x-proxyuser-ip", "x-envoy-external-address",
})

# Shown in the OpenAPI docs ("Authorize"); verification is ours, not FastAPI's.
bearer_scheme = HTTPBearer(auto_error=False, description="Keycloak access token (realm stratmaster)")


class AuthConfigError(RuntimeError):
    """The API refuses to start with this auth configuration."""


@dataclass(frozen=True)
class Principal:
    subject: str
    username: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    client_id: str | None = None
    dev: bool = False
    expires_at: float | None = None  # the token's `exp` (epoch seconds): long-lived streams end there

    @property
    def actor(self) -> str:
        return self.username or self.subject

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN in self.roles

    def permissions(self, mission: str) -> set[Permission]:
        if self.is_platform_admin:
            return {READ, WRITE, ADMIN}
        perms: set[Permission] = set()
        for role in self.roles:
            parts = role.split(":")
            if len(parts) == 3 and parts[0] == "mission" and parts[1] == mission:
                perms |= _LEVELS.get(parts[2], set())
        return perms

    def can(self, mission: str, permission: str) -> bool:
        return permission in self.permissions(mission)

    def readable(self, missions: list[str]) -> list[str]:
        return [m for m in missions if self.can(m, READ)]


DEV_PRINCIPAL = Principal(subject="dev", username="dev", roles=frozenset({PLATFORM_ADMIN}), dev=True)


# Dev mode only: the roles to act with instead of platform-admin (comma-separated, e.g.
# "mission:demo:reader"), so the page and tests can be tried as a reader or writer. It can only
# narrow: every dev-mode caller is the platform admin already. Ignored in OIDC mode.
DEV_ROLES_HEADER = "X-StratMaster-Dev-Roles"
_DEV_ROLE = re.compile(r"^(platform-admin|mission:[a-z][a-z0-9_]{1,47}:(reader|writer|admin))$")


def dev_principal(roles_header: str | None) -> Principal:
    """The dev-mode caller: the platform admin, or the roles the header names (400 on a bad one)."""
    if roles_header is None:
        return DEV_PRINCIPAL
    roles = [r.strip() for r in roles_header.split(",") if r.strip()]
    bad = [r for r in roles if not _DEV_ROLE.fullmatch(r)]
    if bad or len(roles) > 20:
        raise HTTPException(400, detail=f"{DEV_ROLES_HEADER}: roles are platform-admin or mission:<id>:"
                                        f"reader|writer|admin, at most 20 (got {bad[:1] or len(roles)})")
    return Principal(subject="dev", username="dev", roles=frozenset(roles), dev=True)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_config(settings: Settings) -> None:
    """Called at startup: refuse configurations that would serve without auth."""
    if settings.auth_mode not in AUTH_MODES:
        raise AuthConfigError(f"STRATMASTER_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, not {settings.auth_mode!r}")
    if settings.auth_mode == "dev" and not is_loopback(settings.bind_host):
        raise AuthConfigError(
            f"refusing to start: auth_mode 'dev' (no tokens) is only allowed on a loopback bind_host, "
            f"not {settings.bind_host!r}. Set STRATMASTER_AUTH_MODE=oidc and STRATMASTER_KEYCLOAK_URL, "
            "or bind to 127.0.0.1."
        )
    if settings.auth_mode == "oidc" and not settings.keycloak_url:
        raise AuthConfigError(
            "refusing to start: no authentication configured. auth_mode 'oidc' (the default) needs "
            "STRATMASTER_KEYCLOAK_URL (e.g. http://127.0.0.1:8089); for a local development server without "
            "tokens set STRATMASTER_AUTH_MODE=dev explicitly (loopback only; `stratmaster dev up` does)."
        )


def warn_dev_mode(settings: Settings) -> None:
    """Logged at every start in dev mode: it must never be mistaken for a production setting."""
    log.warning(
        "AUTHENTICATION DISABLED (STRATMASTER_AUTH_MODE=dev): every direct loopback caller is the platform "
        "admin 'dev'. Requests through a proxy or for a non-loopback host are refused, but a tunnel "
        "(ssh -L, kubectl port-forward) is not detectable: never expose or tunnel to this port. "
        "Use STRATMASTER_AUTH_MODE=oidc with STRATMASTER_KEYCLOAK_URL anywhere else.",
        extra={"bind_host": settings.bind_host, "auth_mode": settings.auth_mode},
    )


def unauthorized(message: str) -> HTTPException:
    desc = message.replace('"', "'")
    return HTTPException(401, detail=message,
                         headers={"WWW-Authenticate": f'Bearer realm="stratmaster", error="invalid_token", error_description="{desc}"'})


class OidcVerifier:
    """Verifies Keycloak access tokens locally against the realm's JWKS.

    Key cache: the discovery document and JWKS are cached `cache_seconds`. After
    that a token with a known key id is still verified with the cached keys while
    one background refresh runs (stale-while-revalidate), so an identity-provider
    outage does not fail valid tokens: the last good keys are kept for up to
    `max_stale_seconds` beyond their TTL. An unknown key id (key rotation) waits
    for a refetch, at most one every `refetch_interval` seconds. Refreshes are
    single-flight (concurrent requests share one) and a failed one backs off
    exponentially (1 s, 2 s, ... up to `refetch_interval`), so a flood of requests
    during an outage makes at most one attempt per back-off period."""

    def __init__(self, keycloak_url: str, realm: str, audience: str, *, leeway: float = 5.0,
                 cache_seconds: float = 600.0, refetch_interval: float = 30.0, max_stale_seconds: float = 24 * 3600.0,
                 http: httpx.AsyncClient | None = None):
        self.realm_url = f"{keycloak_url.rstrip('/')}/realms/{realm}"
        self.audience = audience
        self.leeway = leeway
        self.cache_seconds = cache_seconds
        self.refetch_interval = refetch_interval
        self.max_stale_seconds = max_stale_seconds
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
        self._issuer: str | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic time of the last successful fetch
        self._retry_at = 0.0  # after a failed refresh: none starts before this monotonic time (back-off)
        self._last_attempt = -1e9  # monotonic start of the last refresh (unknown key ids: one per interval)
        self._failures = 0  # consecutive failed refreshes
        self._refresh_task: asyncio.Task | None = None
        self.fetch_attempts = 0  # refreshes started (observability and tests)

    async def aclose(self) -> None:
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_task.cancel()
            try:
                await self._refresh_task
            except BaseException:  # noqa: BLE001 - cancelled on shutdown
                pass
        await self.http.aclose()

    async def _fetch(self) -> None:
        conf = (await self.http.get(f"{self.realm_url}/.well-known/openid-configuration")).raise_for_status().json()
        jwks = (await self.http.get(conf["jwks_uri"])).raise_for_status().json()
        keys = {}
        for k in jwks.get("keys", []):
            if k.get("use", "sig") == "sig" and k.get("kty") == "RSA" and k.get("kid"):
                try:
                    keys[k["kid"]] = jwt.PyJWK(k, algorithm="RS256")
                except jwt.PyJWTError:
                    continue
        self._issuer, self._keys, self._fetched_at = conf["issuer"], keys, time.monotonic()

    async def _refresh_once(self) -> None:
        """One refresh attempt; never raises (a failure keeps the last good keys)."""
        self.fetch_attempts += 1
        self._last_attempt = time.monotonic()
        try:
            await self._fetch()
        except Exception as exc:  # unreachable, an error status, a malformed document: keep the last good keys
            self._failures += 1
            delay = min(self.refetch_interval, 2.0 ** (self._failures - 1))
            self._retry_at = time.monotonic() + delay
            log.error("cannot fetch the realm's keys; keeping the last good ones",
                      extra={"realm_url": self.realm_url, "error": f"{type(exc).__name__}: {exc}",
                             "retry_in_s": delay, "cached_keys": len(self._keys)})
        else:
            self._failures = 0
            self._retry_at = 0.0

    def _start_refresh(self, unknown_kid: bool = False) -> asyncio.Task | None:
        """The running refresh, or a new one when the back-off (and, for an unknown key
        id, the refetch interval) allows it, else None."""
        if self._refresh_task is not None and not self._refresh_task.done():
            return self._refresh_task
        now = time.monotonic()
        if now < self._retry_at or (unknown_kid and now - self._last_attempt < self.refetch_interval):
            return None
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_once())
        return self._refresh_task

    def _usable(self) -> bool:
        """Keys that may still verify tokens (fresh, or stale within max_stale_seconds)."""
        return (bool(self._keys) and self._fetched_at is not None
                and time.monotonic() - self._fetched_at <= self.cache_seconds + self.max_stale_seconds)

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        if self._usable() and kid in self._keys:
            if self._fetched_at is not None and time.monotonic() - self._fetched_at > self.cache_seconds:
                self._start_refresh()  # in the background: this request goes on with the cached key
            return self._keys[kid]
        # No usable keys, or an unknown key id (rotation): wait for a refresh, if one may run now.
        task = self._start_refresh(unknown_kid=self._usable())
        if task is not None:
            await asyncio.shield(task)  # a cancelled request must not cancel the shared refresh
        if not self._usable():
            raise HTTPException(503, detail="identity provider unavailable: cannot verify tokens right now")
        if kid not in self._keys:
            raise unauthorized("token signed with an unknown key")
        return self._keys[kid]

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("malformed token") from None
        if header.get("alg") != "RS256":
            raise unauthorized("token algorithm must be RS256")
        key = await self._key(header.get("kid"))
        try:
            claims = jwt.decode(
                token, key, algorithms=["RS256"], audience=self.audience, issuer=self._issuer, leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(f"token is not for this API (audience must include {self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("token issued by another realm") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"invalid token: {exc}") from None
        if claims.get("typ", "Bearer") != "Bearer":  # ID and refresh tokens are not API credentials
            raise unauthorized(f"a {claims.get('typ')} token is not an access token")
        roles = set(claims.get("realm_access", {}).get("roles", []))
        roles |= set(claims.get("resource_access", {}).get(self.audience, {}).get("roles", []))
        exp = claims.get("exp")
        return Principal(subject=claims["sub"], username=claims.get("preferred_username"),
                         roles=frozenset(roles), client_id=claims.get("azp"),
                         expires_at=float(exp) if isinstance(exp, (int, float)) else None)


def _host_of(value: str) -> str:
    """The host name of a Host header value or an Origin ("http://h:p")."""
    value = value.split("://", 1)[-1].split("/", 1)[0]
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def dev_request_refusal(request: Request) -> HTTPException | None:
    """Dev mode serves loopback clients on a loopback socket only, directly, never
    through a proxy, and only for a loopback host name."""
    server = request.scope.get("server") or (None, None)
    client = request.scope.get("client") or (None, None)
    if not is_loopback(server[0]):
        return HTTPException(503, detail=f"auth_mode 'dev' refuses to serve on non-loopback address {server[0]!r}; "
                                         "use STRATMASTER_AUTH_MODE=oidc")
    proxied = sorted(h for h in request.headers.keys() if h in PROXY_HEADERS or h.startswith("x-forwarded-"))
    if not is_loopback(client[0]) or proxied:
        why = f" (proxy headers: {', '.join(proxied)})" if proxied else ""
        return HTTPException(403, detail="auth_mode 'dev' only accepts direct requests from loopback" + why +
                                         "; use STRATMASTER_AUTH_MODE=oidc and a bearer token")
    host = request.headers.get("host")
    if host is not None and not is_loopback(_host_of(host)):
        return HTTPException(403, detail="auth_mode 'dev' only answers requests for a loopback host name "
                                         "(127.0.0.1, ::1, localhost); use STRATMASTER_AUTH_MODE=oidc")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and not is_loopback(_host_of(origin)):
        return HTTPException(403, detail="auth_mode 'dev' refuses cross-site browser requests (non-loopback Origin)")
    if origin == "null":
        return HTTPException(403, detail="auth_mode 'dev' refuses cross-site browser requests (opaque Origin)")
    return None


async def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the caller, or 401/403/503. Cached on request.state."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    settings: Settings = request.app.state.settings
    if settings.auth_mode == "dev":
        refusal = dev_request_refusal(request)
        if refusal:
            raise refusal
        principal = dev_principal(request.headers.get(DEV_ROLES_HEADER))
    else:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("missing bearer token")
        principal = await request.app.state.verifier.verify(token.strip())
    request.state.principal = principal
    return principal
