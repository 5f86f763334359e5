"""multipart/form-data bodies (POST /v1/files), parsed with the standard library's email parser."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

from byom.errors import InvalidRequest


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    data: bytes


def parse(content_type: str | None, body: bytes) -> dict[str, Part]:
    """The form's parts by field name (the last one wins), or InvalidRequest."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest("Upload the file as multipart/form-data (fields 'file' and 'purpose')")
    if "boundary=" not in content_type:
        raise InvalidRequest("multipart/form-data without a boundary")
    envelope = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
    message: Message = BytesParser(policy=HTTP).parsebytes(envelope)
    if not message.is_multipart():
        raise InvalidRequest("The multipart body cannot be read")
    parts: dict[str, Part] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        parts[str(name)] = Part(
            name=str(name),
            filename=part.get_filename(),
            data=payload if isinstance(payload, bytes) else b"",
        )
    return parts
