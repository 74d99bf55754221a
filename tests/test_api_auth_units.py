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
    check_auth_config(Settings(_env_file=None))  # dev on 127.0.0.1
    check_auth_config(Settings(_env_file=None, auth_mode="oidc", keycloak_url="http://kc", bind_host="0.0.0.0"))
    with pytest.raises(AuthConfigError, match="loopback"):
        check_auth_config(Settings(_env_file=None, bind_host="0.0.0.0"))
