"""Uploads larger than a Lambda payload (SPEC §4.3 files): a presigned S3 PUT straight into the
tenant's prefix, then a completion that checks what arrived and makes it a file like any other.

`POST /v1/files/uploads` `{filename, purpose, bytes}` → `{id, object: "upload", upload_url,
expires_at, ...}`; the client PUTs the bytes to `upload_url`; `POST /v1/files/uploads/{id}/complete`
→ the file object. The pending upload is a small marker object beside the file's key, so nothing
is listed as a file before its bytes are there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from byom import clock
from byom.errors import InvalidRequest, NotFound, PayloadTooLarge
from byom.fine_tuning import FileRecord
from byom.logic.access import Principal, require_tenant_key
from byom.logic.fine_tuning_jobs import UPLOAD_PURPOSES, WRITERS, file_key


class CreateUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    purpose: str
    bytes: Annotated[int, Field(ge=1)]
    mime_type: str | None = None


class UploadBucket(Protocol):
    """The data bucket's side of uploads (byom.dal.batches.BatchData)."""

    def put(self, key: str, body: bytes) -> None: ...

    def find(self, key: str) -> bytes | None: ...

    def size(self, key: str) -> int | None:
        """The object's size, None when there is none."""
        ...

    def upload_url(self, key: str, expires_in: int) -> str:
        """A presigned PUT of exactly that key."""
        ...


class FileRecords(Protocol):
    def create(self, record: FileRecord) -> None: ...


@dataclass
class UploadStore:
    bucket: UploadBucket
    files: FileRecords
    max_bytes: int
    url_seconds: int


def _marker(tenant_id: str, file_id: str) -> str:
    return f"tenants/{tenant_id}/files/{file_id}.upload.json"


def create_upload(store: UploadStore, principal: Principal, body: CreateUpload) -> dict[str, Any]:
    tenant_id = require_tenant_key(principal, WRITERS)
    if body.purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(UPLOAD_PURPOSES)}", param="purpose")
    if body.bytes > store.max_bytes:
        raise PayloadTooLarge(
            f"The file is {body.bytes} bytes; uploads may be at most {store.max_bytes} bytes"
        )
    file_id = clock.new_id("file").replace("_", "-")
    now = clock.now()
    pending = {"filename": body.filename, "purpose": body.purpose, "bytes": body.bytes, "created_at": now}
    store.bucket.put(_marker(tenant_id, file_id), json.dumps(pending).encode())
    return {
        "id": file_id,
        "object": "upload",
        "status": "pending",
        "upload_url": store.bucket.upload_url(file_key(tenant_id, file_id), store.url_seconds),
        "expires_at": now + store.url_seconds,
        "created_at": now,
        **{k: pending[k] for k in ("filename", "purpose", "bytes")},
    }


def complete_upload(store: UploadStore, principal: Principal, file_id: str) -> FileRecord:
    """The uploaded bytes as a file; refused unless they arrived, are the size announced and are
    UTF-8 text (files are JSONL, answered as text by the content route)."""
    tenant_id = require_tenant_key(principal, WRITERS)
    marker = store.bucket.find(_marker(tenant_id, file_id))
    if not marker:
        # None: never created (or another tenant's); empty: completed already.
        raise NotFound(f"No such pending Upload object: {file_id}", param="upload_id")
    pending = json.loads(marker)
    key = file_key(tenant_id, file_id)
    size = store.bucket.size(key)
    if size is None:
        raise InvalidRequest("Nothing was uploaded to upload_url yet", param="upload_id")
    if size != pending["bytes"] or size > store.max_bytes:
        raise InvalidRequest(f"The upload is {size} bytes; {pending['bytes']} were announced", param="bytes")
    data = store.bucket.find(key) or b""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The file is not UTF-8 text (files are JSONL)", param="file") from None
    record = FileRecord(
        id=file_id,
        tenant_id=tenant_id,
        filename=pending["filename"],
        purpose=pending["purpose"],
        bytes=size,
        created_at=int(pending["created_at"]),
        s3_key=key,
        lines=len([line for line in data.splitlines() if line.strip()]),
    )
    store.files.create(record)
    store.bucket.put(_marker(tenant_id, file_id), b"")
    return record
