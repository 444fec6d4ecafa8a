"""The one Temporal client factory, used by the worker, the API and the command line."""

from __future__ import annotations

import asyncio
import time

import structlog
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig

from runtime.settings import Settings
from workflows.payloads import DATA_CONVERTER

log = structlog.get_logger(__name__)


def tls_config(settings: Settings) -> TLSConfig | bool:
    """How to reach Temporal: plain (the embedded dev server), TLS with the system's roots
    (Temporal Cloud with an API key), or TLS with our CA and client certificate (mTLS).
    Reads the PEM files: call it off the event loop."""
    files = (settings.temporal_tls_ca, settings.temporal_tls_cert, settings.temporal_tls_key)
    if not any(files) and not settings.temporal_tls_server_name:
        return settings.temporal_tls or bool(settings.temporal_api_key.get_secret_value())
    ca, cert, key = (path.read_bytes() if path else None for path in files)
    return TLSConfig(
        server_root_ca_cert=ca,
        client_cert=cert,
        client_private_key=key,
        domain=settings.temporal_tls_server_name or None,
    )


async def connect(
    settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None
) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key.get_secret_value() or None,
        tls=await asyncio.to_thread(tls_config, settings),
        data_converter=DATA_CONVERTER,
        lazy=lazy,
        runtime=runtime,
    )


def worker_runtime(settings: Settings) -> Runtime | None:
    """The worker's Temporal runtime: with ``HYOJUNKA_WORKER_METRICS_ADDRESS`` set, the SDK's
    metrics and the workflows' own (escalations raised, notifications delivered) are served
    there in Prometheus format."""
    if not settings.worker_metrics_address:
        return None
    metrics = PrometheusConfig(bind_address=settings.worker_metrics_address)
    return Runtime(telemetry=TelemetryConfig(metrics=metrics))


async def connect_lazily(settings: Settings) -> Client:
    """A client that connects on first use, so a process can start while Temporal is down."""
    return await connect(settings, lazy=True)


async def connect_patiently(
    settings: Settings, within: float = 120.0, runtime: Runtime | None = None
) -> Client:
    """Connect, retrying while Temporal starts (a worker started beside its server)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await connect(settings, runtime=runtime)
        except Exception:  # not up yet, whatever the transport says: keep trying a while
            if time.monotonic() > deadline:
                raise
            log.info("waiting for Temporal", address=settings.temporal_address)
            await asyncio.sleep(0.5)


async def register_search_attributes(client: Client) -> None:
    """Register our typed search attributes on a server that lacks them (idempotent)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )
    from temporalio.service import RPCError, RPCStatusCode

    from workflows import search_attributes as sa

    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        existing = set(listed.custom_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()  # the time-skipping test server cannot list, only add
    kinds = {
        "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "DATETIME": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    }
    missing = {
        key.name: kinds[key.indexed_value_type.name] for key in sa.ALL if key.name not in existing
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
