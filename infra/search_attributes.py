"""Register the custom search attributes when missing (idempotent)."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from workflows.search_attributes import ALL_KEYS


def _indexed_type(key) -> IndexedValueType.ValueType:
    return IndexedValueType.ValueType(int(key.indexed_value_type))


async def ensure_search_attributes(client: Client) -> list[str]:
    """Add whichever of the case's attributes the namespace lacks; return the names added."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:
        # The Java time-skipping test server cannot list attributes, only add them.
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    added = []
    for key in ALL_KEYS:
        if key.name in known:
            continue
        try:
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=client.namespace, search_attributes={key.name: _indexed_type(key)}))
            added.append(key.name)
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS and "already exists" not in err.message:
                raise
    return added
