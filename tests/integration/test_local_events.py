"""local_stack.moto_events: what a function puts on the platform bus through moto reaches the local
stack's bus (the template's Lambda rules), as EventBridge delivers it; other buses' events do not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_stack import moto_events


@pytest.fixture
def delivered() -> Iterator[list[dict[str, Any]]]:
    moto_events.install()
    seen: list[dict[str, Any]] = []
    moto_events.forward_to(lambda event: seen.append(event) or 1)
    with mock_aws():
        yield seen
    moto_events.forward_to(None)


def _put(bus: str = "default") -> None:
    client = boto3.client("events", region_name="us-east-1")
    if bus != "default":
        client.create_event_bus(Name=bus)
    detail = {"tenant_id": "tnt_a", "batch_id": "batch_1", "status": "completed", "metadata": {}}
    client.put_events(
        Entries=[
            {
                "Source": "byom.batches",
                "DetailType": "BatchFinished",
                "Detail": json.dumps(detail),
                "EventBusName": bus,
            }
        ]
    )


def test_an_event_on_the_platform_bus_is_delivered_in_eventbridges_shape(
    delivered: list[dict[str, Any]],
) -> None:
    _put()
    assert [(e["source"], e["detail-type"], e["detail"]["batch_id"]) for e in delivered] == [
        ("byom.batches", "BatchFinished", "batch_1")
    ]


def test_an_event_on_another_bus_is_not_delivered(delivered: list[dict[str, Any]]) -> None:
    _put("tenant-bus")
    assert delivered == []
