"""byom.providers.eval_runner: the pipeline's evaluation asks a fine-tuned model each example through
the gateway's own provider (for Bedrock, its Converse translation and client), and the provider's
failures become the pipeline's typed errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from byom.api.fine_tuning_tasks import bedrock_runner
from byom.fine_tuning import Job, ProviderRejected, ProviderThrottled
from byom.logic.datasets import Example
from byom.providers import Target, eval_runner
from byom.providers.bedrock import BedrockProvider

DEPLOYMENT = "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abc"
TARGET = Target(tenant_id="tnt_1", alias="support", provider="bedrock", model_id=DEPLOYMENT)
EXAMPLE = Example(
    line=3, system="Answer in one word.", turns=(("user", "Capital of France?"), ("assistant", "Paris"))
)


class FakeRuntime:
    """bedrock-runtime's Converse: records each call, answers `answer` or raises `error`."""

    def __init__(self, answer: str = "Paris", error: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer
        self.error = error

    def converse(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "Converse")
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": self.answer}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6},
        }


def _ask(runtime: FakeRuntime) -> str:
    return eval_runner.runner(BedrockProvider(client=runtime), TARGET)(EXAMPLE)


def test_an_example_is_answered_with_the_models_text() -> None:
    assert _ask(FakeRuntime(answer="Paris")) == "Paris"


def test_the_prompt_is_the_examples_system_text_and_turns_but_the_answer() -> None:
    runtime = FakeRuntime()
    _ask(runtime)
    (params,) = runtime.calls
    assert params["modelId"] == DEPLOYMENT
    assert params["system"] == [{"text": "Answer in one word."}]
    assert params["messages"] == [{"role": "user", "content": [{"text": "Capital of France?"}]}]


def test_the_model_answers_deterministically_and_briefly() -> None:
    runtime = FakeRuntime()
    _ask(runtime)
    assert runtime.calls[0]["inferenceConfig"] == {
        "maxTokens": eval_runner.MAX_ANSWER_TOKENS,
        "temperature": 0,
    }


def test_throttling_is_retried_by_the_state_machine() -> None:
    with pytest.raises(ProviderThrottled):
        _ask(FakeRuntime(error="ThrottlingException"))


def test_a_refusal_fails_the_job_quoting_the_provider() -> None:
    with pytest.raises(ProviderRejected, match="ValidationException"):
        _ask(FakeRuntime(error="ValidationException"))


def test_a_bedrock_job_is_evaluated_on_its_deployment() -> None:
    job = Job.model_validate(
        {
            "id": "ftjob-1",
            "tenant_id": "tnt_1",
            "model": "support",
            "provider": "bedrock",
            "base_model_id": "amazon.nova-micro-v1:0",
            "data_format": "bedrock-conversation",
            "deployment": "on_demand",
            "training_file": "file-1",
            "hyperparameters": {},
            "seed": 1,
            "threshold": 0.9,
            "created_at": 1,
            "deployment_arn": DEPLOYMENT,
        }
    )
    runtime = FakeRuntime()
    answer = bedrock_runner(job, BedrockProvider(client=runtime))(EXAMPLE)
    assert (answer, runtime.calls[0]["modelId"]) == ("Paris", DEPLOYMENT)
