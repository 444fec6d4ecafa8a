"""Reaching a production Temporal: the API starts unready while Temporal is down and becomes
ready when it comes; mutual TLS with our CA and client certificate; API keys mean TLS."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trustme
from sqlmodel import Session
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from api.auth import create_token
from api.main import create_app
from benchmarks.harness import free_port
from readmodel.db import make_engine
from runtime.binaries import temporal_cli
from runtime.settings import Settings
from runtime.temporal import connect, tls_config
from workflows.payloads import DATA_CONVERTER


async def test_api_starts_unready_while_temporal_is_down_and_ready_when_it_comes(
    sqlite_url: str,
) -> None:
    port = free_port()
    settings = Settings(
        temporal_address=f"127.0.0.1:{port}", database_url=sqlite_url, temporal_call_timeout=3
    )
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        admin = create_token(session, role="admin", name="admin")[1]
    app = create_app(settings)  # its own client, as `hyojunka api` and uvicorn build it
    async with app.router.lifespan_context(app):  # starts although nothing listens there
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/healthz")).status_code == 200
            down = await http.get("/readyz")
            assert down.status_code == 503
            assert down.json()["checks"]["database"] == "ok"
            assert down.json()["checks"]["temporal"].startswith("error")
            # A write meanwhile is a 503 problem with Retry-After, never a crash or a 500.
            write = await http.post(
                "/api/v1/projects",
                json={
                    "lg_code": "131016",
                    "business": "resident_registry",
                    "target_go_live": "2029-04-01",
                },
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert write.status_code == 503, write.text
            assert write.headers["content-type"] == "application/problem+json"
            assert int(write.headers["Retry-After"]) >= 1

            env = await WorkflowEnvironment.start_local(
                port=port,
                dev_server_existing_path=temporal_cli(),
                data_converter=DATA_CONVERTER,
                dev_server_log_level="error",
            )
            try:
                status = 0
                for _ in range(60):
                    status = (await http.get("/readyz")).status_code
                    if status == 200:
                        break
                    await asyncio.sleep(0.5)
                assert status == 200
            finally:
                await env.shutdown()
    engine.dispose()


@contextlib.asynccontextmanager
async def mtls_front(ca: trustme.CA, upstream: str) -> AsyncIterator[int]:
    """A TLS front for the dev server that demands a client certificate signed by ``ca``,
    as a production cluster's frontend does; it passes the bytes on to the plain server."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("temporal.test").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])  # gRPC
    host, port = upstream.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def pki(tmp_path: Path) -> tuple[trustme.CA, dict[str, Path]]:
    ca = trustme.CA()
    client = ca.issue_cert("worker.hyojunka.test")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "tls.crt", "key": tmp_path / "tls.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    return ca, files


async def test_connect_with_client_certificate_reaches_an_mtls_temporal(
    dev_env: WorkflowEnvironment, pki: tuple[trustme.CA, dict[str, Path]]
) -> None:
    ca, files = pki
    upstream = dev_env.client.service_client.config.target_host
    async with mtls_front(ca, upstream) as port:
        settings = Settings(
            temporal_address=f"127.0.0.1:{port}",
            temporal_tls_ca=files["ca"],
            temporal_tls_cert=files["cert"],
            temporal_tls_key=files["key"],
            temporal_tls_server_name="temporal.test",
        )
        client = await connect(settings)
        assert await asyncio.wait_for(client.service_client.check_health(), 10)
        assert client.namespace == "default"

        # Without a client certificate, or without TLS at all, the front lets nobody in.
        no_cert = settings.model_copy(update={"temporal_tls_cert": None, "temporal_tls_key": None})
        plain = Settings(temporal_address=f"127.0.0.1:{port}")
        for refused in (no_cert, plain):
            with pytest.raises(RuntimeError):
                await asyncio.wait_for(connect(refused), 10)


def test_tls_settings_make_the_sdk_tls_config(pki: tuple[trustme.CA, dict[str, Path]]) -> None:
    _, files = pki
    assert tls_config(Settings()) is False  # the embedded dev server: plain
    assert tls_config(Settings(temporal_api_key="k")) is True  # Temporal Cloud: system roots
    assert tls_config(Settings(temporal_tls=True)) is True
    made = tls_config(
        Settings(
            temporal_tls_ca=files["ca"],
            temporal_tls_cert=files["cert"],
            temporal_tls_key=files["key"],
            temporal_tls_server_name="temporal.test",
        )
    )
    assert isinstance(made, TLSConfig)
    assert made.server_root_ca_cert == files["ca"].read_bytes()
    assert made.client_cert == files["cert"].read_bytes()
    assert made.client_private_key == files["key"].read_bytes()
    assert made.domain == "temporal.test"
    with pytest.raises(ValueError, match="together"):
        Settings(temporal_tls_cert=files["cert"])
    # The key never shows in a settings dump or a log line.
    assert "k3y" not in repr(Settings(temporal_api_key="k3y"))
