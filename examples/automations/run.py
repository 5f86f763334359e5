"""Runs a shipped automation example on the local stack, end to end:

    make automation-example EXAMPLE=guardduty      (or: python -m examples.automations.run guardduty)

It starts the local stack in this process (or uses the one at BYOM_URL / BYOM_AWS_URL with
BYOM_ADMIN_KEY), creates a tenant with a model alias on the Bedrock stand-in, creates the example's
automation, puts the sample event on the emulated default bus, and prints the run and the
`AutomationResult` event a rule of its own caught on the bus.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

HERE = Path(__file__).resolve().parent
EXAMPLES = {
    "guardduty": ("guardduty-summary.automation.json", "guardduty-finding.json"),
    "cloudwatch": ("cloudwatch-alarm-triage.automation.json", "cloudwatch-alarm.json"),
}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Target:
    url: str
    aws_url: str
    admin_key: str

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.admin_key}", "content-type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{method} {path}: {error.code} {error.read().decode()}") from None

    def aws(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def load(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    automation_file, event_file = EXAMPLES[name]
    return json.loads((HERE / automation_file).read_text()), json.loads((HERE / event_file).read_text())


def put_event(target: Target, event: dict[str, Any], bus: str = "default") -> None:
    """What `aws events put-events --endpoint-url ...` does with the example's *.entries.json."""
    entry = {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Detail": json.dumps(event["detail"]),
        "Resources": event.get("resources", []),
        "EventBusName": bus,
    }
    answer = target.aws("events").put_events(Entries=[entry])
    if answer.get("FailedEntryCount"):
        raise RuntimeError(f"EventBridge refused the event: {answer['Entries']}")


def listen_for_results(target: Target, name: str) -> str:
    """A queue and a rule on the default bus catching every AutomationResult: the consumer's view."""
    sqs, events = target.aws("sqs"), target.aws("events")
    url = sqs.create_queue(QueueName=f"example-results-{name}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name=f"example-results-{name}",
        EventPattern=json.dumps({"source": ["byom"], "detail-type": ["AutomationResult"]}),
    )
    events.put_targets(Rule=f"example-results-{name}", Targets=[{"Id": "q", "Arn": arn}])
    return url


def wait_for(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise TimeoutError("nothing arrived in time")


def setup_tenant(target: Target, name: str) -> str:
    tenant = target.call("POST", "/admin/tenants", {"name": f"example-{name}"})
    target.call(
        "POST",
        f"/admin/tenants/{tenant['id']}/models",
        {"alias": "ops", "provider": "bedrock", "model_id": "anthropic.claude-3-haiku-20240307-v1:0"},
    )
    return str(tenant["id"])


def run_example(target: Target, name: str, timeout: float = 60) -> dict[str, Any]:
    """Answers the succeeded run and the AutomationResult event's detail."""
    definition, event = load(name)
    tenant_id = setup_tenant(target, name)
    results = listen_for_results(target, name)
    automation = target.call("POST", f"/admin/tenants/{tenant_id}/automations", definition)
    base = f"/admin/tenants/{tenant_id}/automations/{automation['id']}"
    put_event(target, event)

    def finished() -> Any:
        runs = target.call("GET", f"{base}/runs")["data"]
        return runs if runs and runs[0]["status"] in ("succeeded", "failed") else None

    run = wait_for(finished, timeout)[0]
    sqs = target.aws("sqs")

    def result() -> Any:
        for message in sqs.receive_message(QueueUrl=results, MaxNumberOfMessages=10).get("Messages", []):
            detail = json.loads(message["Body"])["detail"]
            if detail["automation_id"] == automation["id"]:
                return detail
        return None

    detail = wait_for(result, timeout) if run["status"] == "succeeded" else None
    return {"automation": automation, "run": run, "result": detail}


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else "guardduty"
    if name not in EXAMPLES:
        print(f"usage: python -m examples.automations.run [{'|'.join(EXAMPLES)}]", file=sys.stderr)
        return 2
    with ExitStack() as running:
        if os.environ.get("BYOM_URL") and os.environ.get("BYOM_AWS_URL"):
            target = Target(os.environ["BYOM_URL"], os.environ["BYOM_AWS_URL"], os.environ["BYOM_ADMIN_KEY"])
        else:
            from local_stack.stack import LocalStack, StackSettings

            print("Starting the local stack (synthesizing the CDK app) ...", file=sys.stderr)
            stack = running.enter_context(LocalStack(StackSettings(port=0, admin_key="example-admin-key")))
            target = Target(stack.url, stack.moto_url, stack.admin_key)
        outcome = run_example(target, name)
    print(json.dumps({"run": outcome["run"], "AutomationResult": outcome["result"]}, indent=2))
    return 0 if outcome["run"]["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
