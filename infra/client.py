"""The one client factory: worker, starter, dev stack and tests connect through it.

The data converter is chosen here, so a payload codec (encryption of borrower
data) is added in one place.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from infra.settings import Settings


def data_converter() -> DataConverter:
    return pydantic_data_converter


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=data_converter())
