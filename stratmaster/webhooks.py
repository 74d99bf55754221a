"""Webhook primitives shared by the workflows, the activities, the starters and
receivers: event ids, bounded payloads, Standard Webhooks signatures, the
one-time sealing of a new endpoint's secret, and the target address rules.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com/):
    webhook-id:        the event id (the receiver's idempotency key: the same on every attempt)
    webhook-timestamp: seconds since the epoch of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>
where the secret is `whsec_<base64 key>`. Any Standard Webhooks library verifies
them (the tests use the reference `standardwebhooks` package).

Pure functions only: workflow code calls `event_id`, `bounded_data` and
`MAX_PAYLOAD_BYTES`, so nothing here may read the clock, the network or randomness
except the functions documented to (`new_secret`, `seal_secret`, `resolve_target`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

from stratmaster.addresses import TargetRefused, resolve_host

SECRET_PREFIX = "whsec_"
MAX_PAYLOAD_BYTES = 16 * 1024  # the whole JSON body a receiver gets
MAX_URL_LENGTH = 2048
SEAL_INFO = b"stratmaster webhook secret v1"

# Events a mission can subscribe to ("*" = all of them). webhook.test only ever goes
# to the one endpoint `stratmaster webhooks test` names.
SubscribableEvent = Literal[
    "ingestion.finished", "ingestion.failed", "research.finished", "backup.finished",
    "mission.activated", "mission.rolled_back",
]
EVENT_TYPES: tuple[SubscribableEvent, ...] = get_args(SubscribableEvent)
TEST_EVENT: Final = "webhook.test"


# ---------------------------------------------------------------- ids and payloads

def event_id(event_type: str, source: str, run: str = "") -> str:
    """The event's business key: the same emitting workflow run and event type give the
    same id, so an emit that runs twice (replay, retried task, reset) delivers once."""
    digest = hashlib.sha256(f"{event_type}\x00{source}\x00{run}".encode()).hexdigest()[:32]
    return f"evt_{digest}"


def canonical_json(value: Any) -> bytes:
    """The body bytes: the same event gives the same bytes on every attempt."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str).encode()


def _clip(value: Any, text: int, items: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= text else value[: max(text - 1, 0)] + "…"
    if isinstance(value, dict):
        return {str(k)[:100]: _clip(v, text, items) for k, v in list(value.items())[:max(items, 8)]}
    if isinstance(value, (list, tuple)):
        return [_clip(v, text, items) for v in list(value)[:items]]
    return value


def payload(event_type: str, timestamp: str, data: dict) -> dict:
    """A Standard Webhooks payload: {"type", "timestamp", "data"}."""
    return {"type": event_type, "timestamp": timestamp, "data": data}


def bounded_data(event_type: str, timestamp: str, data: dict, limit: int = MAX_PAYLOAD_BYTES) -> dict:
    """`data` cut until the whole payload is at most `limit` bytes: strings and lists
    clipped ever shorter (then `"truncated": true`); as a last resort only the
    mission and the flag are left. Deterministic (workflows call it)."""
    if len(canonical_json(payload(event_type, timestamp, data))) <= limit:
        return data
    for text, items in ((2000, 20), (500, 10), (200, 5), (80, 3), (40, 1)):
        cut = {**_clip(data, text, items), "truncated": True}
        if len(canonical_json(payload(event_type, timestamp, cut))) <= limit:
            return cut
    return {"mission": _clip(data.get("mission"), 48, 1), "truncated": True}


# ---------------------------------------------------------------- secrets and signatures

def new_secret() -> str:
    """A new endpoint secret: whsec_ + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value for one attempt."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: int | None = None, tolerance_s: int = 300) -> bool:
    """Receiver side: the signature matches and the timestamp is recent (replay window)."""
    import time

    h = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts = h["webhook-id"], int(h["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else int(time.time())) - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body).encode()
    return any(hmac.compare_digest(expected, s.encode()) for s in h.get("webhook-signature", "").split())


# A new endpoint's secret goes back to the starter sealed to a key pair the starter
# made for this one request (X25519 + HKDF-SHA256 + AES-256-GCM): the workflow
# history records only ciphertext, so the secret is shown once, to that caller.

def reply_keypair() -> tuple[Any, str]:
    """(private key, base64 public key) for one request."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    priv = X25519PrivateKey.generate()
    return priv, base64.b64encode(priv.public_key().public_bytes_raw()).decode()


def _seal_key(shared: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEAL_INFO).derive(shared)


def seal_secret(secret: str, reply_key_b64: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    peer = X25519PublicKey.from_public_bytes(base64.b64decode(reply_key_b64))
    eph = X25519PrivateKey.generate()
    nonce = os.urandom(12)
    ct = AESGCM(_seal_key(eph.exchange(peer))).encrypt(nonce, secret.encode(), SEAL_INFO)
    return base64.b64encode(eph.public_key().public_bytes_raw() + nonce + ct).decode()


def open_secret(sealed_b64: str, private_key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = base64.b64decode(sealed_b64)
    eph, nonce, ct = X25519PublicKey.from_public_bytes(raw[:32]), raw[32:44], raw[44:]
    return AESGCM(_seal_key(private_key.exchange(eph))).decrypt(nonce, ct, SEAL_INFO).decode()


# ---------------------------------------------------------------- targets

def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook target (None when its form is fine)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return f"the URL must be 1-{MAX_URL_LENGTH} characters"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return "the URL must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "the URL must be http:// or https://"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "the URL must not carry credentials (the signature authenticates the sender)"
    if parts.fragment:
        return "the URL must not have a #fragment"
    if port == 0:
        return "the URL's port must not be 0"
    return None


async def resolve_target(url: str, allow_private: bool) -> list[str]:
    """The addresses to connect to for `url`, every one of them checked (a name that
    resolves to any non-public address is refused: no mixed answers). Raises
    TargetRefused, or OSError when the name does not resolve."""
    problem = url_problem(url)
    if problem:
        raise TargetRefused(problem)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return await resolve_host(parts.hostname or "", port, allow_private,
                              "webhooks go to public addresses only "
                              "(STRATMASTER_WEBHOOK_ALLOW_PRIVATE=true allows private targets)")
