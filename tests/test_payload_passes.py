"""The worker skips the SDK's payload passes only where they cannot change a payload.

``worker/payload_passes.py`` replaces the SDK's activation decoder and completion encoder: a
converter with no codec and no external storage skips the passes, any other goes through the
SDK's. These tests run real workflows on the time-skipping server: one whose client has a
codec, which must still see every payload encoded in the history and decoded in the workflow,
and one on our own converter, which must still round-trip its values.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import Sequence

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import PayloadCodec
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from worker import payload_passes
from workflows.payloads import DATA_CONVERTER

CODEC_ENCODING = b"binary/test-codec"


class MarkingCodec(PayloadCodec):
    """Wraps each payload in base64 under its own encoding and counts what it handles."""

    def __init__(self) -> None:
        self.encoded = 0
        self.decoded = 0

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.encoded += len(payloads)
        return [
            Payload(
                metadata={"encoding": CODEC_ENCODING},
                data=base64.b64encode(p.SerializeToString()),
            )
            for p in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.decoded += len(payloads)
        out = []
        for p in payloads:
            assert p.metadata.get("encoding") == CODEC_ENCODING, "a payload skipped the codec"
            inner = Payload()
            inner.ParseFromString(base64.b64decode(p.data))
            out.append(inner)
        return out


@workflow.defn(sandboxed=False)
class Echo:
    def __init__(self) -> None:
        self.heard: list[str] = []

    @workflow.run
    async def run(self, greeting: str) -> str:
        await workflow.wait_condition(lambda: bool(self.heard))
        return f"{greeting}, {self.heard[0]}"

    @workflow.signal
    def hear(self, name: str) -> None:
        self.heard.append(name)


def test_the_passes_are_replaced_on_the_sdk_this_project_pins() -> None:
    """If an SDK upgrade changes the functions, the worker keeps the SDK's (slower) passes
    and says so; this test says it first."""
    assert payload_passes.install()
    assert payload_passes.installed()
    assert not payload_passes.has_effect(DATA_CONVERTER)


async def _echo(client: Client, greeting: str, name: str) -> tuple[str, list[Payload]]:
    queue = f"passes-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[Echo], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        handle = await client.start_workflow(Echo.run, greeting, id=queue, task_queue=queue)
        await handle.signal(Echo.hear, name)
        # A payload the worker cannot read fails its workflow task, retried without end.
        async with asyncio.timeout(20):
            result = await handle.result()
        stored = [
            e.workflow_execution_completed_event_attributes.result.payloads[0]
            async for e in handle.fetch_history_events()
            if e.HasField("workflow_execution_completed_event_attributes")
        ]
    return result, stored


async def test_a_converter_with_a_codec_still_goes_through_it(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    payload_passes.install()
    codec = MarkingCodec()
    config = time_skipping_env.client.config()
    config["data_converter"] = dataclasses.replace(DATA_CONVERTER, payload_codec=codec)
    client = Client(**config)

    result, [stored] = await _echo(client, "こんにちは", "港区")

    # The workflow read its input and its signal, so both were decoded on the worker; the
    # result it returned is stored under the codec's encoding, so it was encoded there too.
    assert result == "こんにちは, 港区"
    assert stored.metadata["encoding"] == CODEC_ENCODING
    assert codec.encoded >= 3  # the client's input and signal, the worker's result
    assert codec.decoded >= 3  # the worker's input and signal, the client's result


async def test_our_converter_round_trips_without_the_passes(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    payload_passes.install()
    result, [stored] = await _echo(time_skipping_env.client, "おはよう", "札幌市")

    assert result == "おはよう, 札幌市"
    assert stored.metadata["encoding"] == b"json/plain"
