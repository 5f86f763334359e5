"""A real bedrock-runtime client under botocore's Stubber: every request the code makes is validated
against the installed service model, and the answers are shaped as Bedrock's."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.response import StreamingBody
from botocore.stub import Stubber
from botocore.validate import validate_parameters


def bedrock_client() -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def converse_answer(
    content: list[dict[str, Any]] | None = None,
    *,
    stop_reason: str = "end_turn",
    input_tokens: int = 11,
    output_tokens: int = 7,
) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content or [{"text": "Hello there"}]}},
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": 12},
    }


def add_stream_response(
    stubber: Stubber,
    events: list[dict[str, Any]],
    expected_params: dict[str, Any] | None = None,
    *,
    then: Exception | None = None,
) -> None:
    """Stubber cannot validate an event stream as a whole, so each event is validated against the
    ConverseStream event shape here, then handed over in order by the stubbed call; `then` is
    raised after the events, as botocore raises an error event arriving mid-stream."""
    operation = stubber.client.meta.service_model.operation_model("ConverseStream")
    for event in events:
        validate_parameters(event, operation.output_shape.members["stream"])

    def stream() -> Iterator[dict[str, Any]]:
        yield from events
        if then is not None:
            raise then

    response: dict[str, Any] = {"stream": {}}
    stubber.add_response("converse_stream", response, expected_params)
    response["stream"] = stream()  # Stubber hands back this very dict


def stream_events(
    text_parts: list[str], *, stop_reason: str = "end_turn", input_tokens: int = 11, output_tokens: int = 7
) -> list[dict[str, Any]]:
    return [
        {"messageStart": {"role": "assistant"}},
        *({"contentBlockDelta": {"delta": {"text": t}, "contentBlockIndex": 0}} for t in text_parts),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": stop_reason}},
        {
            "metadata": {
                "usage": {
                    "inputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens + output_tokens,
                },
                "metrics": {"latencyMs": 12},
            }
        },
    ]


def invoke_answer(payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    data = json.dumps(payload).encode()
    answer: dict[str, Any] = {
        "body": StreamingBody(io.BytesIO(data), len(data)),
        "contentType": "application/json",
    }
    if headers:
        answer["ResponseMetadata"] = {"HTTPHeaders": headers}
    return answer
