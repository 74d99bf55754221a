"""The principal key and the fair-use settings, read from Settings as configured."""
from __future__ import annotations

import pytest
from pydantic import SecretStr

from stratmaster import principals
from stratmaster.settings import Settings


def test_a_configured_principal_key_is_the_key_and_no_file_is_made(tmp_path):
    configured = Settings(_env_file=None, data_dir=tmp_path / "a", principal_key=SecretStr("k" * 40))
    assert principals.load_key(configured) == b"k" * 40
    assert not (tmp_path / "a" / principals.KEY_FILE).exists()
    other = Settings(_env_file=None, data_dir=tmp_path / "a", principal_key=SecretStr("z" * 40))
    grant = principals.sign_path(principals.load_key(configured), "m", "/x")
    principals.verify_path(principals.load_key(configured), grant, "m", "/x")
    with pytest.raises(principals.GrantRefused):
        principals.verify_path(principals.load_key(other), grant, "m", "/x")
    # unset: a key file in the data dir, the same for every reader of that dir
    made = Settings(_env_file=None, data_dir=tmp_path / "b")
    key = principals.load_key(made)
    assert len(key) == 32 and (tmp_path / "b" / principals.KEY_FILE).read_bytes() == key
    with pytest.raises(principals.GrantRefused, match="expired"):
        principals.verify(key, principals.sign(key, {"kind": "path"}, ttl_s=-5))


def test_fair_use_settings_reach_the_limits():
    from starters.api.limits import Limits

    s = Settings(_env_file=None, api_starts_per_minute=12, api_mission_starts_per_minute=30, api_starts_burst=4,
                 api_streams_per_principal=2, api_streams_per_mission=5)
    limits = Limits.from_settings(s)
    assert (limits.principals.rate, limits.principals.capacity) == (12 / 60, 4)
    assert (limits.missions.rate, limits.missions.capacity) == (30 / 60, 8)
    assert (limits.streams_per_principal, limits.streams_per_mission) == (2, 5)
