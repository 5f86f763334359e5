"""OpenAI request bodies of the data plane: chat completions and embeddings (SPEC §4.3).

Unknown fields are accepted and kept, unlike the admin API: OpenAI adds parameters often, the SDK
sends some by default, OpenAI-compatible providers receive them unchanged and Bedrock ignores them.
What the gateway does read is validated here, so a bad value is a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

Role = Literal["system", "developer", "user", "assistant", "tool"]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_value", message)


MAX_OUTPUT_TOKENS = 10_000_000


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)


class ImageUrl(_Open):
    url: NonEmpty
    detail: str | None = None


class ContentPart(_Open):
    type: NonEmpty
    text: str | None = Field(default=None, validate_default=True)
    image_url: ImageUrl | None = Field(default=None, validate_default=True)

    @field_validator("text")
    @classmethod
    def _text_part_has_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("type") == "text" and value is None:
            raise _invalid("a 'text' part needs 'text'")
        return value

    @field_validator("image_url")
    @classmethod
    def _image_part_has_url(cls, value: ImageUrl | None, info: ValidationInfo) -> ImageUrl | None:
        if info.data.get("type") == "image_url" and value is None:
            raise _invalid("an 'image_url' part needs 'image_url'")
        return value


Content = str | list[ContentPart]


class FunctionCall(_Open):
    name: NonEmpty
    arguments: str


class ToolCall(_Open):
    id: NonEmpty
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Open):
    """One chat message. Role-specific rules are field validators so the error names the field."""

    role: Role
    content: Content | None = Field(default=None, validate_default=True)
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, validate_default=True)
    tool_call_id: str | None = Field(default=None, validate_default=True)

    @field_validator("content")
    @classmethod
    def _content_unless_assistant(cls, value: Content | None, info: ValidationInfo) -> Content | None:
        role = info.data.get("role")
        if value is None and role in ("system", "developer", "user", "tool"):
            raise _invalid(f"{role} messages need 'content'")
        return value

    @field_validator("tool_calls")
    @classmethod
    def _tool_calls_of_assistant(cls, value: list[ToolCall] | None, info: ValidationInfo) -> Any:
        role = info.data.get("role")
        if value and role != "assistant":
            raise _invalid("only assistant messages carry 'tool_calls'")
        if role == "assistant" and not value and info.data.get("content") is None:
            raise _invalid("assistant messages need 'content' or 'tool_calls'")
        return value

    @field_validator("tool_call_id")
    @classmethod
    def _tool_call_id_of_tool(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("role") == "tool" and not value:
            raise _invalid("tool messages need 'tool_call_id'")
        return value


class FunctionDefinition(_Open):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Open):
    type: Literal["function"]
    function: FunctionDefinition


class ToolChoiceFunction(_Open):
    name: NonEmpty


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: ToolChoiceFunction


class JsonSchemaFormat(_Open):
    name: NonEmpty
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = Field(default=None, validate_default=True)

    @field_validator("json_schema")
    @classmethod
    def _schema_when_asked(cls, value: JsonSchemaFormat | None, info: ValidationInfo) -> Any:
        if info.data.get("type") == "json_schema" and value is None:
            raise _invalid("type 'json_schema' needs 'json_schema'")
        return value


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatRequest(_Open):
    model: NonEmpty
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        default=None, validate_default=True
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    # Bounded so a reservation's bound stays a sane number (no model answers 10M tokens at once).
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    response_format: ResponseFormat | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    safety_identifier: str | None = None
    # A routing hint for OpenAI's prompt cache: passed to OpenAI and OpenAI-compatible providers as
    # sent, not to Bedrock (whose caching is by cache points), and not part of the response cache's key.
    prompt_cache_key: str | None = Field(default=None, max_length=1024)
    n: int | None = Field(default=None, validate_default=True)

    @field_validator("tool_choice")
    @classmethod
    def _choice_needs_tools(cls, value: Any, info: ValidationInfo) -> Any:
        tools: list[Tool] = info.data.get("tools") or []
        if value == "required" and not tools:
            raise _invalid("tool_choice 'required' needs 'tools'")
        if isinstance(value, NamedToolChoice) and value.function.name not in {t.function.name for t in tools}:
            raise _invalid(f"tool_choice names '{value.function.name}', which is not one of 'tools'")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise PydanticCustomError("unsupported_value", "only n=1 is supported")
        return value

    @property
    def max_output_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class EmbeddingRequest(_Open):
    model: NonEmpty
    input: NonEmpty | Annotated[list[NonEmpty], Field(min_length=1, max_length=2048)]
    dimensions: int | None = Field(default=None, ge=1, le=100_000)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
