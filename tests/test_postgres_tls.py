"""PostgreSQL over TLS as production connects to it (`sslmode=verify-full`): a real local
server that takes TLS connections only (hostssl in pg_hba.conf), with certificates this test
makes. The platform's pool and its migrations connect with the authority's certificate and the
server's name checked; a client that trusts another authority, one that names the server by a
name its certificate does not carry, and one without TLS are all refused."""
from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import asyncpg
import pytest

from activities.stores.postgres import create_pool
from stratmaster.local_postgres import LocalPostgres
from stratmaster.migrations import apply_migrations
from tests.support.certs import issue, make_ca
from tests.support.ports import free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.servers]
TLS_ONLY = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory):
    certs = tmp_path_factory.mktemp("pg-certs")
    ca = make_ca(certs, "platform-ca")
    make_ca(certs, "other-ca")
    issue(certs, "server", ca, server=True, hosts=("localhost",))  # the name clients must use
    key = certs / "server.key"
    key.chmod(0o600)
    if os.geteuid() == 0:  # the server runs as postgres and reads its key itself
        shutil.chown(key, "postgres", "postgres")
        os.chmod(certs, 0o755)
    pg = LocalPostgres(data_dir=tmp_path_factory.mktemp("pg-tls") / "pg", port=free_port(),
                       server_settings={"ssl": "on", "ssl_cert_file": str(certs / "server.pem"),
                                        "ssl_key_file": str(key), "ssl_min_protocol_version": "TLSv1.3"},
                       hba=TLS_ONLY)
    pg.start()
    yield pg, certs
    pg.stop()


def dsn(pg: LocalPostgres, host: str, query: str) -> str:
    return f"postgresql://{pg.user}@{host}:{pg.port}/{pg.database}?{query}"


async def test_verify_full_connects_and_migrates(tls_postgres):
    pg, certs = tls_postgres
    url = dsn(pg, "localhost", f"sslmode=verify-full&sslrootcert={certs / 'platform-ca.pem'}")
    await apply_migrations(url)  # the platform's own path, over TLS
    pool = await create_pool(url, max_size=2)
    try:
        row = await pool.fetchrow("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert row["ssl"] is True and row["version"] == "TLSv1.3"
        assert await pool.fetchval("SELECT count(*) FROM schema_migrations") > 0
    finally:
        await pool.close()


@pytest.mark.parametrize("host,query,refusal", [
    ("localhost", "sslmode=verify-full&sslrootcert={certs}/other-ca.pem", ssl.SSLCertVerificationError),
    ("127.0.0.1", "sslmode=verify-full&sslrootcert={certs}/platform-ca.pem", ssl.SSLCertVerificationError),
    ("localhost", "sslmode=disable", asyncpg.InvalidAuthorizationSpecificationError),
])
async def test_other_authorities_wrong_names_and_plain_connections_are_refused(tls_postgres, host, query, refusal):
    pg, certs = tls_postgres
    with pytest.raises(refusal):
        conn = await asyncpg.connect(dsn(pg, host, query.format(certs=Path(certs))), timeout=10)
        await conn.close()
