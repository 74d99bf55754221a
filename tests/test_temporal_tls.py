"""Temporal over mutual TLS, as production runs it: certificates this test makes, a TLS front
(HTTP/2 by ALPN, client certificate required) before the real dev server, and the platform's
one client factory (stratmaster/temporal_client.py). With the configured client certificate a
workflow runs end to end; without one, or with one from another authority, the connection fails."""
from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.worker import Worker

from stratmaster.errors import ServiceUnavailable
from stratmaster.temporal_client import connect
from tests.support.certs import issue, make_ca

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def mtls_front(directory: Path, upstream: str):
    """A TLS listener that requires a client certificate of `ca` and relays to the dev server."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(directory / "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(directory / "server.pem", directory / "server.key")
    ctx.set_alpn_protocols(["h2"])
    host, port = upstream.rsplit(":", 1)

    async def relay(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=ctx, ssl_handshake_timeout=5)
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()

    def quiet(loop, context):  # refused handshakes are the point of two of the tests
        if not isinstance(context.get("exception"), (ssl.SSLError, ConnectionResetError)):
            loop.default_exception_handler(context)

    loop.set_exception_handler(quiet)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        loop.set_exception_handler(before)
        server.close()


@workflow.defn(sandboxed=False)
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        return text


@pytest.fixture
def certs(tmp_path):
    ca = make_ca(tmp_path, "ca")
    issue(tmp_path, "server", ca, server=True)
    issue(tmp_path, "worker", ca, server=False)
    issue(tmp_path, "stranger", make_ca(tmp_path, "other-ca"), server=False)
    return tmp_path


def tls_settings(settings, certs: Path, address: str, client: str | None):
    return settings.model_copy(update={
        "temporal_address": address, "temporal_tls": True, "temporal_tls_ca": certs / "ca.pem",
        "temporal_tls_cert": certs / f"{client}.pem" if client else None,
        "temporal_tls_key": certs / f"{client}.key" if client else None})


async def test_a_client_with_its_certificate_runs_a_workflow_over_mtls(temporal_env, settings, certs):
    upstream = temporal_env.client.service_client.config.target_host
    async with mtls_front(certs, upstream) as address:
        client = await connect(tls_settings(settings, certs, address, "worker"))
        queue = f"tls-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[Echo]):
            assert await client.execute_workflow(Echo.run, "over mTLS", id=f"tls-{uuid.uuid4().hex[:8]}",
                                                 task_queue=queue) == "over mTLS"


@pytest.mark.parametrize("client_cert", [None, "stranger"])
async def test_without_a_trusted_client_certificate_the_connection_fails(temporal_env, settings, certs, client_cert):
    upstream = temporal_env.client.service_client.config.target_host
    async with mtls_front(certs, upstream) as address:
        with pytest.raises(ServiceUnavailable):
            await asyncio.wait_for(connect(tls_settings(settings, certs, address, client_cert)), 60)
