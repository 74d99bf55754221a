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

Dev mode (settings.auth_mode == "dev"): no token; the caller is the platform
admin "dev". Only for a server bound to loopback answering loopback clients
(no proxy headers): the app refuses to start with a non-loopback bind_host
and refuses every request that arrives on or from a non-loopback address.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field

import httpx
import jwt
from fastapi import HTTPException, Request
from fastapi.security import HTTPBearer

from stratmaster.settings import Settings

log = logging.getLogger("stratmaster.api.auth")

PLATFORM_ADMIN = "platform-admin"
READ, WRITE, ADMIN = "read", "write", "admin"
_LEVELS = {"reader": {READ}, "writer": {READ, WRITE}, "admin": {READ, WRITE, ADMIN}}
AUTH_MODES = ("dev", "oidc")

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

    @property
    def actor(self) -> str:
        return self.username or self.subject

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN in self.roles

    def permissions(self, mission: str) -> set[str]:
        if self.is_platform_admin:
            return {READ, WRITE, ADMIN}
        perms: set[str] = set()
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
        raise AuthConfigError("auth_mode 'oidc' needs STRATMASTER_KEYCLOAK_URL (e.g. http://127.0.0.1:8089)")


def unauthorized(message: str) -> HTTPException:
    desc = message.replace('"', "'")
    return HTTPException(401, detail=message,
                         headers={"WWW-Authenticate": f'Bearer realm="stratmaster", error="invalid_token", error_description="{desc}"'})


class OidcVerifier:
    """Verifies Keycloak access tokens locally. The discovery document and JWKS
    are cached; an unknown key id triggers one refetch (key rotation), at most
    every `refetch_interval` seconds."""

    def __init__(self, keycloak_url: str, realm: str, audience: str, *, leeway: float = 5.0,
                 cache_seconds: float = 600.0, refetch_interval: float = 30.0, http: httpx.AsyncClient | None = None):
        self.realm_url = f"{keycloak_url.rstrip('/')}/realms/{realm}"
        self.audience = audience
        self.leeway = leeway
        self.cache_seconds = cache_seconds
        self.refetch_interval = refetch_interval
        self.http = http or httpx.AsyncClient(timeout=10.0)
        self._issuer: str | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _fetch(self) -> None:
        try:
            conf = (await self.http.get(f"{self.realm_url}/.well-known/openid-configuration")).raise_for_status().json()
            jwks = (await self.http.get(conf["jwks_uri"])).raise_for_status().json()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            log.error("cannot fetch the realm's keys", extra={"realm_url": self.realm_url, "error": str(exc)})
            raise HTTPException(503, detail=f"identity provider unavailable ({self.realm_url}): {exc}") from None
        keys = {}
        for k in jwks.get("keys", []):
            if k.get("use", "sig") == "sig" and k.get("kty") == "RSA" and k.get("kid"):
                try:
                    keys[k["kid"]] = jwt.PyJWK(k, algorithm="RS256")
                except jwt.PyJWTError:
                    continue
        self._issuer, self._keys, self._fetched_at = conf["issuer"], keys, time.monotonic()

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if not self._keys or age > self.cache_seconds or (kid not in self._keys and age > self.refetch_interval):
                await self._fetch()
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
        return Principal(subject=claims["sub"], username=claims.get("preferred_username"),
                         roles=frozenset(roles), client_id=claims.get("azp"))


def dev_request_refusal(request: Request) -> HTTPException | None:
    """Dev mode serves loopback clients on a loopback socket only, never through a proxy."""
    server = request.scope.get("server") or (None, None)
    client = request.scope.get("client") or (None, None)
    if not is_loopback(server[0]):
        return HTTPException(503, detail=f"auth_mode 'dev' refuses to serve on non-loopback address {server[0]!r}; "
                                         "use STRATMASTER_AUTH_MODE=oidc")
    if not is_loopback(client[0]) or "x-forwarded-for" in request.headers or "forwarded" in request.headers:
        return HTTPException(403, detail="auth_mode 'dev' only accepts direct requests from loopback; "
                                         "use STRATMASTER_AUTH_MODE=oidc and a bearer token")
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
        principal = DEV_PRINCIPAL
    else:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("missing bearer token")
        principal = await request.app.state.verifier.verify(token.strip())
    request.state.principal = principal
    return principal
