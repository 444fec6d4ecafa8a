"""Skip the SDK's payload passes over an activation when they cannot change a payload.

For every workflow activation and every completion, temporalio (1.35) walks the whole message
three times with its generated payload visitor: once for a codec, once for external storage,
once for storage references. Each pass copies every payload list it meets, even when the data
converter has no codec and no external storage, so that every pass returns what it was given.
Under load that walk was a quarter of the worker's interpreter time (py-spy, 50 concurrent
milestone writers: README.md, "Under load and faults"), more than the workflow code itself.

Our data converter (``workflows.payloads.DATA_CONVERTER``) has neither a codec nor external
storage. For such a converter the passes are skipped; a converter with either (a deployment
that adds encryption, say) goes through the SDK's own passes unchanged. The two functions are
replaced only when their signatures are the ones this was written against; otherwise the
worker logs it and keeps the SDK's, so an SDK upgrade can cost time but never correctness.
``tests/test_payload_passes.py`` fails if the replacement stops applying.
"""

from __future__ import annotations

import inspect
from typing import Any

import structlog
import temporalio.bridge.worker as bridge
import temporalio.converter

log = structlog.get_logger(__name__)

DECODE_PARAMETERS = ("activation", "data_converter", "decode_headers", "storage_concurrency_limit")
ENCODE_PARAMETERS = ("completion", "data_converter", "encode_headers", "storage_concurrency_limit")

_MARK = "_hyojunka_skips_inert_passes"


def has_effect(converter: temporalio.converter.DataConverter) -> bool:
    """Whether the SDK's passes can change a payload with ``converter``."""
    return converter.payload_codec is not None or converter.external_storage is not None


def _parameters(fn: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def installed() -> bool:
    return bool(getattr(bridge.decode_activation, _MARK, False)) and bool(
        getattr(bridge.encode_completion, _MARK, False)
    )


def install() -> bool:
    """Replace the SDK's activation decoder and completion encoder (once per process) with
    ones that skip the passes for a converter without effect. Returns whether they are in
    place."""
    if installed():
        return True
    decode, encode = bridge.decode_activation, bridge.encode_completion
    metrics_type = getattr(
        getattr(temporalio.converter, "_extstore", None), "StorageOperationMetrics", None
    )
    if (
        _parameters(decode) != DECODE_PARAMETERS
        or _parameters(encode) != ENCODE_PARAMETERS
        or metrics_type is None
    ):
        log.warning(
            "payload passes kept",
            reason="the SDK's activation codec functions are not the ones expected",
            decode=_parameters(decode),
            encode=_parameters(encode),
        )
        return False

    bridge.decode_activation = _skipping(decode, metrics_type)  # type: ignore[assignment]
    bridge.encode_completion = _skipping(encode, metrics_type)  # type: ignore[assignment]
    return True


def _skipping(passes: Any, metrics_type: Any) -> Any:
    """``passes`` (the SDK's decoder or encoder of a whole message), skipped for a converter
    without effect: what it would return then, the metrics of no external storage."""

    async def skipping(
        message: Any, data_converter: temporalio.converter.DataConverter, /, **options: Any
    ) -> Any:
        if has_effect(data_converter):
            return await passes(message, data_converter, **options)
        return metrics_type()

    setattr(skipping, _MARK, True)
    return skipping
