"""How workflow inputs, results and state travel: JSON through pydantic, with shared type adapters.

The stock pydantic converter caches its type adapters per converter instance, and the
workflow sandbox makes a new instance for every workflow run, so each new project would
build the schema of its whole state again (a quarter of the first workflow task's time).
One cache for the process, keyed by the (passed-through, hence shared) type, avoids that.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)


@functools.lru_cache(maxsize=512)
def _adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


class _SharedAdapterJSON(PydanticJSONPlainPayloadConverter):
    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        hint = type_hint if type_hint is not None else Any
        try:
            adapter = _adapter(hint)
        except TypeError:  # an unhashable hint: build one for this call only
            adapter = TypeAdapter(hint)
        return adapter.validate_json(payload.data)


# Stateless, so shared: the SDK builds a payload converter for every workflow activation.
_CONVERTERS = tuple(
    _SharedAdapterJSON(max_cached_type_adapters=0)
    if isinstance(c, JSONPlainPayloadConverter)
    else c
    for c in DefaultPayloadConverter.default_encoding_payload_converters
)


class PayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        super().__init__(*_CONVERTERS)


DATA_CONVERTER = DataConverter(payload_converter_class=PayloadConverter)
