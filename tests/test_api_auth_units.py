"""Role -> permission mapping and the loopback rule of dev mode (pure functions;
token verification itself is tested against the real Keycloak in test_api_keycloak.py)."""
from __future__ import annotations

import pytest

from starters.auth import AuthConfigError, Principal, check_auth_config, is_loopback
from stratmaster.settings import Settings


def test_mission_roles_map_to_permissions():
    p = Principal(subject="u", roles=frozenset({"mission:demo:writer", "mission:other:reader", "mission:x:bogus",
                                                "mission:demo", "offline_access"}))
    assert p.permissions("demo") == {"read", "write"}
    assert p.permissions("other") == {"read"}
    assert p.permissions("x") == set() and p.permissions("dem") == set() and p.permissions("demo_2") == set()
    assert p.readable(["demo", "other", "x"]) == ["demo", "other"]
    assert not p.is_platform_admin and p.actor == "u"
    admin = Principal(subject="s", username="admin-user", roles=frozenset({"platform-admin"}))
    assert admin.permissions("anything") == {"read", "write", "admin"} and admin.actor == "admin-user"
    assert Principal(subject="s", roles=frozenset({"mission:demo:admin"})).can("demo", "admin")


@pytest.mark.parametrize("host,ok", [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
                                     ("localhost", True), ("0.0.0.0", False), ("10.0.0.1", False),
                                     ("example.com", False), ("", False), (None, False)])
def test_loopback(host, ok):
    assert is_loopback(host) is ok


def test_auth_config_checks():
    check_auth_config(Settings(_env_file=None, auth_mode="dev"))  # dev on 127.0.0.1, set explicitly
    check_auth_config(Settings(_env_file=None, auth_mode="oidc", keycloak_url="http://kc", bind_host="0.0.0.0"))
    with pytest.raises(AuthConfigError, match="loopback"):
        check_auth_config(Settings(_env_file=None, auth_mode="dev", bind_host="0.0.0.0"))


def test_default_is_not_dev_auth(monkeypatch):
    """Production defaults are safe: nothing configured is OIDC without a Keycloak URL,
    which refuses to start; dev auth only when asked for."""
    monkeypatch.delenv("STRATMASTER_AUTH_MODE", raising=False)
    monkeypatch.delenv("STRATMASTER_KEYCLOAK_URL", raising=False)
    s = Settings(_env_file=None)
    assert s.auth_mode == "oidc"
    with pytest.raises(AuthConfigError, match="no authentication configured"):
        check_auth_config(s)


def test_devstack_enables_dev_auth_explicitly(monkeypatch, tmp_path):
    from starters.devstack import DevStack

    monkeypatch.delenv("STRATMASTER_AUTH_MODE", raising=False)
    assert DevStack(Settings(_env_file=None, data_dir=tmp_path)).env()["STRATMASTER_AUTH_MODE"] == "dev"
    # a mode chosen in the environment (or .env) is respected
    monkeypatch.setenv("STRATMASTER_AUTH_MODE", "oidc")
    assert DevStack(Settings(_env_file=None, data_dir=tmp_path)).env()["STRATMASTER_AUTH_MODE"] == "oidc"


def _request(headers: dict | None = None, client=("127.0.0.1", 5000), server=("127.0.0.1", 8080)):
    from starlette.requests import Request

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {"host": "127.0.0.1:8080"}).items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "client": client, "server": server,
                    "query_string": b""})


@pytest.mark.parametrize("header", ["X-Real-IP", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
                                    "X-Forwarded-Port", "Forwarded", "Via", "True-Client-IP", "CF-Connecting-IP",
                                    "X-Client-IP", "X-Forwarded-Server"])
def test_dev_mode_refuses_any_proxy_header(header):
    from starters.auth import dev_request_refusal

    assert dev_request_refusal(_request({"host": "127.0.0.1:8080"})) is None
    refusal = dev_request_refusal(_request({"host": "127.0.0.1:8080", header: "203.0.113.9"}))
    assert refusal is not None and refusal.status_code == 403 and header.lower() in refusal.detail


@pytest.mark.parametrize("headers,ok", [
    ({"host": "localhost:8080"}, True), ({"host": "[::1]:8080"}, True), ({"host": "127.0.0.1"}, True),
    ({"host": "evil.example:8080"}, False),  # DNS rebinding: a public name resolving to 127.0.0.1
    ({"host": "127.0.0.1.nip.io"}, False),
    ({"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:8080"}, True),
    ({"host": "127.0.0.1:8080", "origin": "https://evil.example"}, False),  # a web page posting to localhost
    ({"host": "127.0.0.1:8080", "origin": "null"}, False),
])
def test_dev_mode_host_and_origin(headers, ok):
    from starters.auth import dev_request_refusal

    assert (dev_request_refusal(_request(headers)) is None) is ok


@pytest.mark.parametrize("text,deep", [('{"a": [1, 2, {"b": "[[[[[[["}]}', False),
                                       ("[" * 65 + "]" * 65, True), ("[" * 64 + "]" * 64, False),
                                       ('{"q": "' + "{" * 500 + '"}', False),
                                       ('{"q": "\\"' + ', "x": ' + "[" * 70 + "]" * 70 + "}", True)])
def test_json_depth_is_found_without_parsing(text, deep):
    from starters.api import json_too_deep

    assert json_too_deep(text) is deep
