"""Uploads over the inline limit (byom.logic.uploads): a presigned PUT, then a checked completion."""

from __future__ import annotations

import json

import pytest
from byom.errors import InvalidRequest, NotFound, PayloadTooLarge
from byom.logic import uploads
from byom.logic.fine_tuning_jobs import file_key

from tests.unit.batch_fakes import DEVELOPER, TENANT, FakeBucket, FakeFiles


class PresigningBucket(FakeBucket):
    def size(self, key: str) -> int | None:
        data = self.objects.get(key)
        return None if data is None else len(data)

    def upload_url(self, key: str, expires_in: int) -> str:
        return f"https://s3.example/{key}?expires={expires_in}"


def store() -> tuple[uploads.UploadStore, PresigningBucket, FakeFiles]:
    bucket, files = PresigningBucket(), FakeFiles()
    return uploads.UploadStore(bucket=bucket, files=files, max_bytes=1000, url_seconds=600), bucket, files


def request(size: int) -> uploads.CreateUpload:
    return uploads.CreateUpload(filename="big.jsonl", purpose="batch", bytes=size)


def test_an_upload_is_a_presigned_put_of_the_tenants_file_key() -> None:
    upload_store, _, files = store()

    upload = uploads.create_upload(upload_store, DEVELOPER, request(10))

    assert upload["upload_url"].startswith(f"https://s3.example/{file_key(TENANT, upload['id'])}")
    assert files.items == {}


def test_a_completed_upload_is_a_file_of_the_announced_purpose() -> None:
    upload_store, bucket, files = store()
    data = json.dumps({"a": 1}).encode() + b"\n"
    upload = uploads.create_upload(upload_store, DEVELOPER, request(len(data)))
    bucket.put(file_key(TENANT, upload["id"]), data)

    record = uploads.complete_upload(upload_store, DEVELOPER, upload["id"])

    assert (record.purpose, record.bytes, record.lines) == ("batch", 9, 1)
    assert files.items[upload["id"]] == record


def test_completing_before_the_bytes_arrived_is_refused() -> None:
    upload_store, _, _ = store()
    upload = uploads.create_upload(upload_store, DEVELOPER, request(10))

    with pytest.raises(InvalidRequest, match="Nothing was uploaded"):
        uploads.complete_upload(upload_store, DEVELOPER, upload["id"])


def test_an_upload_over_the_limit_is_refused_up_front() -> None:
    upload_store, _, _ = store()

    with pytest.raises(PayloadTooLarge):
        uploads.create_upload(upload_store, DEVELOPER, request(1001))


def test_an_upload_completes_once() -> None:
    upload_store, bucket, _ = store()
    upload = uploads.create_upload(upload_store, DEVELOPER, request(2))
    bucket.put(file_key(TENANT, upload["id"]), b"{}")
    uploads.complete_upload(upload_store, DEVELOPER, upload["id"])

    with pytest.raises(NotFound):
        uploads.complete_upload(upload_store, DEVELOPER, upload["id"])
