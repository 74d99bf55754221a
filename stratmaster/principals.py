"""Grants signed by the starters, verified by the workers: Temporal is a trust boundary.

A workflow input is whatever its starter wrote, and a Temporal client that reaches the frontend
can write anything. So the two privileged steps a worker takes on a starter's word carry a grant
signed with the platform's principal key (HMAC-SHA256) instead of a claim:
  - a directory source (the workers read every file below it): a platform admin's principal,
    for that mission (`AddSourceInput.principal`);
  - a document read from the worker's filesystem by path: a grant for that path and mission
    (`DocumentRef.grant`).
The API signs them after its own role checks, the CLI as the operator; a grant is short-lived,
names its mission, and an input without a valid one is refused by the activity. The key:
STRATMASTER_PRINCIPAL_KEY (production: a Kubernetes Secret shared by the API and the ingestion
workers only), else a key file in the data directory, made on first use (the local stack's
processes and the CLI share it)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

KEY_FILE = "principal.key"
PRINCIPAL_TTL_S = 3600  # AddSourceWorkflow's activity runs at once
PATH_GRANT_TTL_S = 86_400  # a big ingestion batch reads its last file hours after the start


class GrantRefused(ValueError):
    """A grant that is missing, forged, expired or for something else."""


_FILE_KEYS: dict[Path, bytes] = {}  # read once per process: ingestion checks a grant for every document


def load_key(settings: Any) -> bytes:
    configured = getattr(settings, "principal_key", None)
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value().encode()
    return data_dir_key(settings, KEY_FILE)


def data_dir_key(settings: Any, name: str) -> bytes:
    """The key file `name` in the data directory, made on first use, read once per process."""
    path = Path(settings.abs_data_dir) / name
    if path not in _FILE_KEYS:
        _FILE_KEYS[path] = read_or_make_key(path)
    return _FILE_KEYS[path]


def read_or_make_key(path: Path) -> bytes:
    """A 32-byte key file, made on first use (atomically: every process agrees on one key)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_bytes(secrets.token_bytes(32))
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, path)  # atomic and never overwrites: two processes starting together agree on one key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, claims: dict, ttl_s: float, now: float | None = None) -> str:
    body = json.dumps({**claims, "exp": int((now or time.time()) + ttl_s)}, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return f"{_b64(body.encode())}.{_b64(mac)}"


def verify(key: bytes, token: str | None, now: float | None = None) -> dict:
    if not token or not isinstance(token, str) or token.count(".") != 1 or len(token) > 4096:
        raise GrantRefused("no signed grant")
    body_b64, mac_b64 = token.split(".")
    try:
        body, mac = _unb64(body_b64), _unb64(mac_b64)
    except ValueError:
        raise GrantRefused("a malformed grant") from None
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise GrantRefused("a grant not signed with this platform's key")
    claims = json.loads(body)
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or claims["exp"] < (now or time.time()):
        raise GrantRefused("an expired grant")
    return claims


def sign_principal(key: bytes, mission: str, actor: str, roles: list[str] | frozenset[str]) -> str:
    return sign(key, {"kind": "principal", "mission": mission, "actor": actor, "roles": sorted(roles)}, PRINCIPAL_TTL_S)


def verify_principal(key: bytes, token: str | None, mission: str) -> tuple[str, list[str]]:
    """(actor, roles) of a principal signed for `mission`."""
    claims = verify(key, token)
    if claims.get("kind") != "principal" or claims.get("mission") != mission:
        raise GrantRefused("a grant for something else")
    return str(claims.get("actor", "unknown")), [str(r) for r in claims.get("roles", [])]


def sign_path(key: bytes, mission: str, path: str) -> str:
    return sign(key, {"kind": "path", "mission": mission, "path": path}, PATH_GRANT_TTL_S)


def verify_path(key: bytes, token: str | None, mission: str, path: str) -> None:
    claims = verify(key, token)
    if claims.get("kind") != "path" or claims.get("mission") != mission or claims.get("path") != path:
        raise GrantRefused("a grant for another path or mission")


def path_ref(settings: Any, mission: str, path: str):
    """A DocumentRef reading `path` on the ingestion worker, with its grant: what the CLI, the API
    (after its platform-admin check), the benches and the tests send."""
    from stratmaster.contracts.ingestion import DocumentRef

    return DocumentRef(path=path, grant=sign_path(load_key(settings), mission, path))
