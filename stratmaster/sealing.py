"""Secrets the platform keeps for later use, sealed at rest with the platform's key-encryption key.

What a database row or a backup holds is `enc1:<base64 nonce + AES-256-GCM ciphertext>`, bound to
what it belongs to (the associated data, e.g. "webhook:<endpoint id>"), so a sealed value copied
to another row does not open there. The key: STRATMASTER_SECRETS_KEY (production: a Kubernetes
Secret given to the workers that use it: 32 random bytes as base64, anything else is refused; the
chart generates one and keeps it across upgrades), else `<data_dir>/secrets.key`, made on first use
(the local stack's processes share it).
A value without the prefix was stored before sealing existed: it is read as is and sealed again
by its owner. Restoring a backup on a platform with another key leaves its sealed values
unreadable: the owners re-create them (a webhook endpoint is added again)."""
from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stratmaster.principals import data_dir_key

PREFIX = "enc1:"
KEY_FILE = "secrets.key"


class Unsealable(ValueError):
    """A sealed value that this key does not open (another platform's key, or tampered with)."""


def secrets_key(settings: Any) -> bytes:
    configured = getattr(settings, "secrets_key", None)
    if configured is not None and configured.get_secret_value().strip():
        return parse_key(configured.get_secret_value())
    return data_dir_key(settings, KEY_FILE)


def parse_key(text: str) -> bytes:
    """A configured key: 32 random bytes as base64 (`openssl rand -base64 32`), nothing weaker."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise ValueError("STRATMASTER_SECRETS_KEY must be 32 random bytes as base64 (`openssl rand -base64 32`); "
                         "a passphrase or a placeholder would seal every secret under a guessable key")
    return raw


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def seal(key: bytes, value: str, context: str) -> str:
    nonce = os.urandom(12)
    return PREFIX + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, value.encode(), context.encode())).decode()


def unseal(key: bytes, stored: str, context: str) -> str:
    """The plain value (a value stored before sealing existed is returned as it is)."""
    if not is_sealed(stored):
        return stored
    try:
        blob = base64.b64decode(stored[len(PREFIX):], validate=True)
        return AESGCM(key).decrypt(blob[:12], blob[12:], context.encode()).decode()
    except (InvalidTag, binascii.Error, ValueError):
        raise Unsealable(f"a sealed secret for {context} does not open with this platform's key") from None
