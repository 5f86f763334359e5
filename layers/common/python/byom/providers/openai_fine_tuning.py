"""OpenAI's fine-tuning API for the pipeline's tasks, through the gateway's own OpenAI provider.

A job on an `openai` alias trains with the alias's credential: its key (Secrets Manager, as the
data plane reads it) and its base_url when it has one (the local stack's stand-in; https only in the
cloud). Provider failures become the pipeline's typed errors: retryable ones (throttling, 5xx,
timeouts) `ProviderThrottled`, which the state machine retries; the rest `ProviderRejected`, quoting
OpenAI's message with the key scrubbed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from byom.fine_tuning import Job, ProviderRejected
from byom.logic.datasets import Example
from byom.providers import Target, eval_runner
from byom.providers.eval_runner import as_pipeline_error
from byom.providers.openai_compat import OpenAICompatibleProvider

T = TypeVar("T")

PROVIDER = "openai"


class OpenAIFineTuning:
    def __init__(
        self, provider: OpenAICompatibleProvider, credentials: Any, *, max_tokens: int = 512
    ) -> None:
        self._provider = provider
        self._credentials = credentials
        self._max_tokens = max_tokens

    def target(self, job: Job, model_id: str | None = None) -> Target:
        """The call's target as the data plane builds it from an alias and its credential."""
        credential = self._credentials.get(job.tenant_id, job.credential) if job.credential else None
        if job.credential and credential is None:
            raise ProviderRejected(
                f"The credential '{job.credential}' of alias '{job.model}' no longer exists"
            )
        return Target(
            tenant_id=job.tenant_id,
            alias=job.model,
            provider=PROVIDER,
            model_id=model_id or job.base_model_id,
            credential=job.credential,
            base_url=credential.base_url if credential else None,
            has_key=bool(credential and credential.secret_arn),
        )

    @staticmethod
    def _run(what: str, call: Callable[[], T]) -> T:
        return as_pipeline_error(what, call)

    def upload(self, job: Job, data: bytes) -> str:
        target = self.target(job)
        return self._run(
            "Uploading the training file to OpenAI",
            lambda: self._provider.upload_file(target, f"{job.id}-train.jsonl", data),
        )

    def start(self, job: Job, training_file: str) -> str:
        target = self.target(job)
        return self._run(
            "Creating the OpenAI fine-tuning job",
            lambda: self._provider.create_fine_tuning_job(
                target,
                training_file=training_file,
                hyperparameters=dict(job.hyperparameters),
                suffix=job.suffix,
                seed=job.seed,
            ),
        )

    def job(self, job: Job) -> dict[str, Any]:
        target = self.target(job)
        return self._run(
            "Reading the OpenAI fine-tuning job",
            lambda: self._provider.fine_tuning_job(target, job.provider_job_arn or ""),
        )

    def cancel(self, job: Job) -> None:
        target = self.target(job)
        self._run(
            "Cancelling the OpenAI fine-tuning job",
            lambda: self._provider.cancel_fine_tuning_job(target, job.provider_job_arn or ""),
        )

    def runner(self, job: Job) -> Callable[[Example], str]:
        """Asks the fine-tuned model through the data plane's provider code, for evaluation."""
        return eval_runner.runner(
            self._provider, self.target(job, job.provider_model_id), max_tokens=self._max_tokens
        )
