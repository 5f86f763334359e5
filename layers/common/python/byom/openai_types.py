"""OpenAI request bodies of the data plane: chat completions, embeddings, responses (SPEC §4.3).

Unknown fields are accepted and kept, unlike the admin API: OpenAI adds parameters often, the SDK
sends some by default, OpenAI-compatible providers receive them unchanged and Bedrock ignores them.
What the gateway does read is validated here, so a bad value is a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
)
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


# The Responses API (POST /v1/responses): the request shapes the gateway serves. Input items and
# tools are the function-calling subset every provider can honour; OpenAI's built-in tools (web
# search, file search, computer use...) and server-side conversations are refused by name.

MAX_METADATA_PAIRS = 16


class InputText(_Open):
    type: Literal["input_text"]
    text: str


class InputImage(_Open):
    type: Literal["input_image"]
    image_url: NonEmpty | None = Field(default=None, validate_default=True)
    detail: Literal["low", "high", "auto", "original"] | None = None

    @field_validator("image_url")
    @classmethod
    def _by_url(cls, value: str | None) -> str | None:
        if value is None:
            raise _invalid("an 'input_image' part needs 'image_url' (file ids are not supported)")
        return value


class OutputText(_Open):
    type: Literal["output_text"]
    text: str


class RefusalPart(_Open):
    type: Literal["refusal"]
    refusal: str


InputPart = Annotated[InputText | InputImage | OutputText | RefusalPart, Field(discriminator="type")]


class MessageItem(_Open):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputPart]


class FunctionCallItem(_Open):
    type: Literal["function_call"]
    call_id: NonEmpty
    name: NonEmpty
    arguments: str


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    call_id: NonEmpty
    output: str | list[InputPart]


class ReasoningItem(_Open):
    """A reasoning item a client sends back (the Agents SDK does): it carries no content a
    provider other than the one that wrote it can use, so it is accepted and not passed on."""

    type: Literal["reasoning"]


def _item_type(value: Any) -> str:
    # An item without `type` is a message ("easy input message" in OpenAI's terms).
    if isinstance(value, dict):
        return str(value.get("type", "message"))
    return str(getattr(value, "type", "message"))


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(
        _item_type,
        custom_error_type="unsupported_value",
        custom_error_message="supported input items are 'message', 'function_call', "
        "'function_call_output' and 'reasoning'",
    ),
]


class FunctionTool(_Open):
    type: Literal["function"]
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionToolChoice(_Open):
    type: Literal["function"]
    name: NonEmpty


class TextFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    name: NonEmpty | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", validate_default=True)
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _schema_when_asked(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        if info.data.get("type") == "json_schema" and (value is None or not info.data.get("name")):
            raise _invalid("format 'json_schema' needs 'name' and 'schema'")
        return value


class TextConfig(_Open):
    format: TextFormat | None = None


MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class ResponsesRequest(_Open):
    model: NonEmpty
    input: Annotated[str, StringConstraints(min_length=1)] | Annotated[list[InputItem], Field(min_length=1)]
    instructions: str | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | None = Field(
        default=None, validate_default=True
    )
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_PAIRS)] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = Field(default=None, max_length=1024)
    store: bool | None = True
    stream: bool | None = False
    previous_response_id: NonEmpty | None = None
    truncation: Literal["auto", "disabled"] | None = None
    # Accepted as OpenAI's names, refused unless off: the gateway answers while the client waits
    # and keeps a conversation through previous_response_id.
    background: bool | None = Field(default=None, validate_default=True)
    conversation: Any = Field(default=None, validate_default=True)

    @field_validator("tool_choice")
    @classmethod
    def _choice_needs_tools(cls, value: Any, info: ValidationInfo) -> Any:
        tools: list[FunctionTool] = info.data.get("tools") or []
        if value == "required" and not tools:
            raise _invalid("tool_choice 'required' needs 'tools'")
        if isinstance(value, FunctionToolChoice) and value.name not in {t.name for t in tools}:
            raise _invalid(f"tool_choice names '{value.name}', which is not one of 'tools'")
        return value

    @field_validator("background")
    @classmethod
    def _not_in_background(cls, value: bool | None) -> bool | None:
        if value:
            raise PydanticCustomError("unsupported_value", "background responses are not supported")
        return value

    @field_validator("conversation")
    @classmethod
    def _no_conversation(cls, value: Any) -> None:
        if value is not None:
            raise PydanticCustomError(
                "unsupported_value", "conversations are not supported; continue with previous_response_id"
            )
        return None

    @property
    def stores(self) -> bool:
        return self.store is not False
