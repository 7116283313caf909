"""The one client factory: worker, starter, dev stack and tests connect through it.

The data converter is chosen here, so a payload codec (encryption of borrower
data) is added in one place.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from infra.codec import codec_from_setting, data_converter_with
from infra.settings import Settings


def data_converter(settings: Settings | None = None) -> DataConverter:
    """Pydantic payloads, encrypted (AES-256-GCM, failures too) when ``ARREARS_PAYLOAD_KEYS`` is set:
    borrower data then never reaches the server, its histories or the UI in clear. Without settings
    (replay tests, recorders) it is the plain converter; unencrypted payloads always decode, so
    cases started before encryption go on."""
    if settings is None or not settings.payload_keys:
        return pydantic_data_converter
    return data_converter_with(codec_from_setting(settings.payload_keys), encode_failure_attributes=True)


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=data_converter(settings))
