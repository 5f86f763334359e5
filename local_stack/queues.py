"""SQS event sources of the template (AWS::Lambda::EventSourceMapping), polled in-process.

moto keeps the queues and their redrive (a message received more than maxReceiveCount times moves to
the dead-letter queue) but invokes no function. Each mapping here polls its queue as Lambda's poller
does: a batch of up to BatchSize messages, the SQS event Lambda sends, and with ReportBatchItemFailures
only the records the handler names go back; the rest are deleted. One difference, for speed: a
failed record is visible again at once instead of after the queue's visibility timeout.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from local_stack.template import REGION, Resolver, Template

log = logging.getLogger(__name__)

# moto serves one request at a time: no long polling (it would hold every other AWS call), a short sleep.
POLL_SECONDS = 0.3


@dataclass(frozen=True)
class QueueSource:
    logical_id: str
    queue_arn: str
    function_name: str
    batch_size: int
    report_failures: bool


def sqs_sources(template: Template, resolver: Resolver) -> list[QueueSource]:
    found = []
    for logical_id, resource in template.of_type("AWS::Lambda::EventSourceMapping"):
        props = resolver.resolve(resource.get("Properties", {}))
        arn = str(props.get("EventSourceArn", ""))
        if ":sqs:" not in arn or props.get("Enabled") is False:
            continue
        found.append(
            QueueSource(
                logical_id=logical_id,
                queue_arn=arn,
                function_name=str(props["FunctionName"]),
                batch_size=int(props.get("BatchSize") or 10),
                report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            )
        )
    return found


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS poller sends."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


class QueuePollers:
    def __init__(
        self, sources: list[QueueSource], endpoint_url: str, invoke: Callable[[str, dict[str, Any]], Any]
    ) -> None:
        self.sources = sources
        self._endpoint = endpoint_url
        self._invoke = invoke
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> QueuePollers:
        for source in self.sources:
            thread = threading.Thread(target=self._poll, args=(source,), daemon=True, name=source.logical_id)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _poll(self, source: QueueSource) -> None:
        sqs = boto3.client(
            "sqs",
            endpoint_url=self._endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        url = sqs.get_queue_url(QueueName=source.queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.poll_once(sqs, url, source)
            except Exception as error:  # the stack is stopping, or one batch failed: keep polling
                if not self._stop.is_set():
                    log.warning("polling %s failed: %s", source.logical_id, error)

    def poll_once(self, sqs: Any, url: str, source: QueueSource) -> int:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(source.batch_size, 10),
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        failed: set[str] = {m["MessageId"] for m in messages}
        try:
            answer = self._invoke(source.function_name, sqs_event(messages, source.queue_arn))
        except Exception as error:  # the whole batch failed: every message goes back
            log.info("%s failed its batch: %s", source.function_name, error)
        else:
            if source.report_failures and isinstance(answer, dict):
                failed = {str(f.get("itemIdentifier")) for f in answer.get("batchItemFailures") or []}
            else:
                failed = set()
        for message in messages:
            if message["MessageId"] in failed:
                with contextlib.suppress(Exception):
                    sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)
