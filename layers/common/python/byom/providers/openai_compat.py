"""OpenAI and OpenAI-compatible endpoints (Azure OpenAI, vLLM, Ollama, OpenRouter, ...) through the
official SDK, imported on first use: it is the heaviest import of the package and Bedrock-only
functions never need it.

The request is passed through (fields the gateway does not know included), with `model` set to
the alias's model id. The provider key is read per call from the key reader, used only in the
Authorization header, and scrubbed from every message that leaves this module.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from byom.errors import InvalidRequest, OutboundRefused, ProviderError
from byom.openai_types import ChatRequest, EmbeddingRequest
from byom.providers import (
    ChatResult,
    EmbeddingResult,
    KeyReader,
    StreamDelta,
    StreamEvent,
    Target,
    Usage,
    openai_responses,
)
from byom.security import check_outbound_address, validate_base_url

T = TypeVar("T")

# Keyless servers (a local Ollama) ignore the header; the SDK insists on sending one.
NO_KEY = "byom-no-key"
REDACTED = "[redacted]"
MAX_QUOTED_CHARS = 500
# Clients kept per (endpoint, key): one per credential in use, forgotten all at once past this.
MAX_KEPT_CLIENTS = 64

Resolver = Callable[[str, int], Iterable[tuple[Any, ...]]]


def _sdk() -> Any:
    import openai

    return openai


def _httpx() -> Any:
    """The HTTP library of the SDK (its responses are this library's)."""
    import httpx2

    return httpx2


def _default_resolver(host: str, port: int) -> Iterable[tuple[Any, ...]]:
    return socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)


# What the gateway reads from an answer; anything else the provider sends is kept as it came.


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class _PromptTokensDetails(_Lenient):
    cached_tokens: int | None = None


class _Usage(_Lenient):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # OpenAI's automatic prompt caching: of prompt_tokens, those read from its cache (billed at
    # the cached-input rate). Servers without caching send null or leave it out.
    prompt_tokens_details: _PromptTokensDetails | None = None


class _Message(_Lenient):
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _Choice(_Lenient):
    message: _Message
    finish_reason: str | None = None


class _Completion(_Lenient):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _ChunkChoice(_Lenient):
    index: int = 0
    delta: dict[str, Any] = Field(default_factory=dict)
    finish_reason: str | None = None


class _Chunk(_Lenient):
    choices: list[_ChunkChoice] = Field(default_factory=list)
    usage: _Usage | None = None


class _Embedding(_Lenient):
    index: int
    embedding: list[float]


class _EmbeddingUsage(_Lenient):
    prompt_tokens: int = 0


class _Embeddings(_Lenient):
    data: list[_Embedding]
    usage: _EmbeddingUsage | None = None


def _usage(usage: _Usage | None) -> Usage:
    if usage is None:
        return Usage()
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens if details else None) or 0
    return Usage(
        usage.prompt_tokens, usage.completion_tokens, cached_tokens=min(max(cached, 0), usage.prompt_tokens)
    )


def gateway_status(provider_status: int) -> tuple[int, bool]:
    """The gateway's answer to a provider's HTTP status, and whether trying again may help."""
    if provider_status == 429:
        return 429, True
    if provider_status in (408, 504):
        return 504, True
    if provider_status == 503:
        return 503, True
    if provider_status >= 500 or provider_status == 409:
        return 502, True
    if provider_status in (400, 413, 422):
        return 400, False
    # 401/403/404 and the rest: the tenant's credential or model id is wrong, not the caller's request.
    return 502, False


def _status_error(response: Any) -> Exception:
    """The SDK's exception for an answer with a failing status, as its client makes it: the body's
    `error` object (or the body, or its text) as the exception's body."""
    openai = _sdk()
    text = response.text.strip()
    body: Any = text
    with contextlib.suppress(ValueError):  # not JSON: the text is the body
        body = json.loads(text)
    data = body.get("error", body) if isinstance(body, dict) else body
    kind = openai.AuthenticationError if response.status_code == 401 else openai.APIStatusError
    return kind(f"Error code: {response.status_code}", response=response, body=data)


def _detail(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body:
        return body
    try:
        return str(error.response.text)
    except Exception:
        return str(getattr(error, "message", "") or "")


class OpenAICompatibleProvider:
    def __init__(
        self,
        keys: KeyReader,
        *,
        timeout_seconds: float = 25.0,
        allow_loopback_http: bool = False,
        default_base_url: str | None = None,
        transport: Any = None,
        resolve: Resolver | None = None,
    ) -> None:
        self._keys = keys
        self._timeout = timeout_seconds
        self._allow_loopback = allow_loopback_http
        self._default_base_url = default_base_url
        self._transport = transport  # tests pass an in-process one
        self._http_client: Any = None
        self._resolve = resolve or _default_resolver
        # One SDK client per endpoint and key, kept: building one costs more than the request
        # (its options, headers and URL parsed afresh). Keys rotate, so the map is bounded.
        self._clients: dict[tuple[str, str], Any] = {}

    # plumbing

    def _label(self, target: Target) -> str:
        if target.provider == "openai" and not target.base_url:
            return "OpenAI"
        return f"The provider at {urlsplit(self._base_url(target)).hostname}"

    def _base_url(self, target: Target) -> str:
        base_url = target.base_url or self._default_base_url
        if not base_url:
            raise OutboundRefused(f"Credential '{target.credential}' has no base_url")
        return base_url

    def _check_destination(self, base_url: str) -> None:
        """Refuse what the admin API would refuse, and names that resolve to metadata or link-local
        addresses now (SPEC §5), whatever they resolved to when the credential was stored."""
        try:
            validate_base_url(base_url, allow_loopback_http=self._allow_loopback)
        except InvalidRequest as error:
            raise OutboundRefused(f"Refusing to call the provider: {error.message}") from None
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = {str(info[4][0]).split("%")[0] for info in self._resolve(host, port)}
        except OSError:
            raise ProviderError(f"Could not resolve the provider host {host}", retryable=True) from None
        for address in sorted(addresses):
            reason = check_outbound_address(
                ipaddress.ip_address(address), allow_loopback=self._allow_loopback
            )
            if reason:
                raise OutboundRefused(f"Refusing to call {host}: {reason}")

    def _http(self) -> Any:
        if self._http_client is None:
            # Redirects are not followed: a provider must not bounce the gateway to another host.
            self._http_client = _sdk().DefaultHttpxClient(follow_redirects=False, transport=self._transport)
        return self._http_client

    def _client(self, target: Target, key: str | None, timeout: float | None) -> Any:
        """The kept client of the target's endpoint and key; with `timeout`, a copy that waits
        that long (None: the caller passes its timeout with the request)."""
        base_url, api_key = self._base_url(target), key or NO_KEY
        kept = self._clients.get((base_url, api_key))
        if kept is None:
            if len(self._clients) >= MAX_KEPT_CLIENTS:
                self._clients.clear()
            kept = _sdk().OpenAI(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                timeout=self._timeout,
                http_client=self._http(),
            )
            self._clients[(base_url, api_key)] = kept
        if timeout is None or timeout == self._timeout:
            return kept
        return kept.with_options(timeout=timeout)

    def _post_json(self, client: Any, path: str, body: dict[str, Any], timeout: float) -> Any:
        """POST `body` to `path` under the client's endpoint with its key, through the SDK's HTTP
        client, the answer left unparsed: for answers parsed here (a chat completion). The SDK's
        request path (its options model, its typed transforms of every message, its response
        wrapper) costs about as much as the rest of the gateway's work on the call, to send the
        same JSON. A failure raises the SDK's own exception, as the SDK would, so the 401 retry
        and the error mapping are the same for both paths."""
        openai, httpx = _sdk(), _httpx()
        base = client.base_url  # the SDK's: with its trailing slash
        headers = {
            "Authorization": f"Bearer {client.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            response = self._http().post(
                base.copy_with(raw_path=base.raw_path + path.encode()),
                content=json.dumps(body).encode(),
                headers=headers,
                timeout=timeout,
            )
        except httpx.TimeoutException as error:
            raise openai.APITimeoutError(request=error.request) from None
        except httpx.HTTPError as error:
            raise openai.APIConnectionError(request=error.request) from None
        if not response.is_success:  # redirects too: they are not followed
            raise _status_error(response)
        return response

    def _key(self, target: Target, *, refresh: bool) -> str | None:
        if not target.has_key or not target.credential:
            return None
        return self._keys.get(target.tenant_id, target.credential, refresh=refresh)

    def _timeout_for(self, timeout: float | None) -> float:
        return self._timeout if timeout is None else min(timeout, self._timeout)

    def _error(
        self, error: Exception, target: Target, keys: Iterable[str | None], timeout: float | None = None
    ) -> ProviderError:
        openai = _sdk()
        label = self._label(target)
        if isinstance(error, openai.APITimeoutError):
            mapped = ProviderError(
                f"{label} did not answer within {self._timeout_for(timeout):g} s", status=504, retryable=True
            )
        elif isinstance(error, openai.APIConnectionError):
            mapped = ProviderError(f"{label} could not be reached", retryable=True)
        elif isinstance(error, openai.APIStatusError):
            status, retryable = gateway_status(error.status_code)
            detail = _detail(error)[:MAX_QUOTED_CHARS]
            mapped = ProviderError(
                f"{label} answered {error.status_code}: {detail}".rstrip(": "),
                status=status,
                retryable=retryable,
                provider_status=error.status_code,
            )
        elif isinstance(error, openai.APIError):
            detail = _detail(error)[:MAX_QUOTED_CHARS]
            mapped = ProviderError(f"{label} failed while answering: {detail}", retryable=True)
        else:
            mapped = ProviderError(f"{label} failed ({type(error).__name__})")
        for key in keys:
            if key:
                mapped.message = mapped.message.replace(key, REDACTED)
        mapped.args = (mapped.message,)
        return mapped

    def _call(
        self,
        target: Target,
        call: Callable[[Any], T],
        timeout: float | None = None,
        *,
        timed_by_call: bool = False,
    ) -> tuple[T, list[str | None]]:
        """Make the call; after a 401, read the key again (it may have been rotated since it was
        cached) and retry once if it changed. Returns the answer and the keys that were used.
        `timed_by_call`: `call` passes its timeout with the request itself (no client copy)."""
        openai = _sdk()
        seconds = self._timeout_for(timeout)
        copied = None if timed_by_call else seconds
        self._check_destination(self._base_url(target))
        keys = [self._key(target, refresh=False)]
        try:
            return call(self._client(target, keys[0], copied)), keys
        except openai.AuthenticationError as error:
            fresh = self._key(target, refresh=True)
            if fresh is None or fresh == keys[0]:
                raise self._error(error, target, keys, seconds) from None
            keys.append(fresh)
        except openai.OpenAIError as error:
            raise self._error(error, target, keys, seconds) from None
        try:
            return call(self._client(target, keys[-1], copied)), keys
        except openai.OpenAIError as error:
            raise self._error(error, target, keys, seconds) from None

    def _malformed(self, target: Target, what: str) -> ProviderError:
        return ProviderError(f"{self._label(target)} answered a malformed {what}")

    # the interface

    @staticmethod
    def _body(request: BaseModel, *drop: str) -> dict[str, Any]:
        """The caller's fields as they came, less those the gateway sets itself."""
        body = request.model_dump(mode="json", exclude_unset=True)
        # `user` is the data subject's id in this gateway (audit, erasure); it stays in the account.
        for name in ("model", "user", *drop):
            body.pop(name, None)
        return body

    def chat(self, request: ChatRequest, target: Target, *, timeout: float | None = None) -> ChatResult:
        body = self._body(request, "stream", "stream_options")
        seconds = self._timeout_for(timeout)
        raw, _ = self._call(
            target,
            lambda client: self._post_json(
                client, "chat/completions", {**body, "model": target.model_id}, seconds
            ),
            timeout,
            timed_by_call=True,
        )
        try:
            completion = _Completion.model_validate_json(raw.content)
        except (ValidationError, ValueError):
            raise self._malformed(target, "chat completion") from None
        choice = completion.choices[0]
        message = choice.message.model_dump(exclude_none=True) | {
            "role": "assistant",
            "content": choice.message.content,
        }
        return ChatResult(
            message=message, finish_reason=choice.finish_reason or "stop", usage=_usage(completion.usage)
        )

    def stream(
        self, request: ChatRequest, target: Target, *, timeout: float | None = None
    ) -> Iterator[StreamEvent]:
        body = self._body(request, "stream", "stream_options")
        messages = body.pop("messages")
        # Usage is always asked for: the gateway meters every call, whatever the caller wants to see.
        body["stream_options"] = {"include_usage": True}
        chunks, keys = self._call(
            target,
            lambda client: client.chat.completions.create(
                model=target.model_id, messages=messages, stream=True, extra_body=body
            ),
            timeout,
        )
        return self._stream_events(chunks, target, keys, self._timeout_for(timeout))

    def _stream_events(
        self, chunks: Any, target: Target, keys: list[str | None], timeout: float
    ) -> Iterator[StreamEvent]:
        openai = _sdk()
        try:
            for item in chunks:
                try:
                    chunk = _Chunk.model_validate(item.to_dict() if hasattr(item, "to_dict") else item)
                except ValidationError:
                    raise self._malformed(target, "stream chunk") from None
                for choice in chunk.choices[:1]:
                    delta = {k: v for k, v in choice.delta.items() if v is not None}
                    yield StreamDelta(delta, finish_reason=choice.finish_reason)
                if chunk.usage is not None:
                    yield _usage(chunk.usage)
        except openai.OpenAIError as error:
            raise self._error(error, target, keys, timeout) from None
        except ValueError:
            raise self._malformed(target, "stream") from None
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()

    def respond(self, request: ChatRequest, target: Target, *, timeout: float | None = None) -> ChatResult:
        """The chat request on the provider's Responses API (byom.providers.openai_responses)."""
        body = openai_responses.body_of(request)
        items = body.pop("input")
        raw, _ = self._call(
            target,
            lambda client: client.responses.with_raw_response.create(
                model=target.model_id, input=items, extra_body=body
            ),
            timeout,
        )
        try:
            return openai_responses.parse_json(raw.http_response.content)
        except ValueError:
            raise self._malformed(target, "response") from None

    def respond_stream(
        self, request: ChatRequest, target: Target, *, timeout: float | None = None
    ) -> Iterator[StreamEvent]:
        body = openai_responses.body_of(request)
        items = body.pop("input")
        events, keys = self._call(
            target,
            lambda client: client.responses.create(
                model=target.model_id, input=items, stream=True, extra_body=body
            ),
            timeout,
        )
        return self._response_events(events, target, keys, self._timeout_for(timeout))

    def _response_events(
        self, events: Any, target: Target, keys: list[str | None], timeout: float
    ) -> Iterator[StreamEvent]:
        openai = _sdk()
        try:
            yield from openai_responses.stream_events(
                item.to_dict() if hasattr(item, "to_dict") else item for item in events
            )
        except openai_responses.StreamFailed as failed:
            detail = str(failed)[:MAX_QUOTED_CHARS]
            raise self._error(
                openai.APIError(detail, request=None, body=None), target, keys, timeout
            ) from None
        except openai.OpenAIError as error:
            raise self._error(error, target, keys, timeout) from None
        except ValueError:
            raise self._malformed(target, "stream") from None
        finally:
            close = getattr(events, "close", None)
            if close:
                close()

    def embed(
        self, request: EmbeddingRequest, target: Target, *, timeout: float | None = None
    ) -> EmbeddingResult:
        body = self._body(request, "input", "encoding_format")
        texts = request.texts
        # Vectors are asked for as floats, which every compatible server supports; the gateway
        # encodes base64 itself when the caller wants it.
        raw, _ = self._call(
            target,
            lambda client: client.embeddings.with_raw_response.create(
                model=target.model_id, input=texts, encoding_format="float", extra_body=body
            ),
            timeout,
        )
        try:
            answer = _Embeddings.model_validate_json(raw.http_response.content)
        except (ValidationError, ValueError):
            raise self._malformed(target, "embeddings response") from None
        vectors = [e.embedding for e in sorted(answer.data, key=lambda e: e.index)]
        if len(vectors) != len(texts):
            raise self._malformed(target, "embeddings response")
        tokens = answer.usage.prompt_tokens if answer.usage else 0
        return EmbeddingResult(vectors=vectors, usage=Usage(prompt_tokens=tokens))

    # fine-tuning: what the fine-tuning pipeline's tasks call (byom.providers.openai_fine_tuning),
    # through the same destination checks, key refresh and scrubbing as the data plane.

    def upload_file(self, target: Target, filename: str, data: bytes) -> str:
        answer, _ = self._call(
            target, lambda client: client.files.create(file=(filename, data), purpose="fine-tune")
        )
        return str(answer.id)

    def create_fine_tuning_job(
        self,
        target: Target,
        *,
        training_file: str,
        hyperparameters: dict[str, Any],
        suffix: str | None,
        seed: int | None,
    ) -> str:
        options: dict[str, Any] = {}
        if suffix:
            options["suffix"] = suffix
        if seed is not None:
            options["seed"] = seed
        method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}
        answer, _ = self._call(
            target,
            lambda client: client.fine_tuning.jobs.create(
                model=target.model_id, training_file=training_file, method=method, **options
            ),
        )
        return str(answer.id)

    def fine_tuning_job(self, target: Target, job_id: str) -> dict[str, Any]:
        answer, _ = self._call(target, lambda client: client.fine_tuning.jobs.retrieve(job_id))
        found: dict[str, Any] = answer.to_dict() if hasattr(answer, "to_dict") else dict(answer)
        return found

    def cancel_fine_tuning_job(self, target: Target, job_id: str) -> None:
        self._call(target, lambda client: client.fine_tuning.jobs.cancel(job_id))
