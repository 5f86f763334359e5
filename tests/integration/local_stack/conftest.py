"""Fixtures for the local stack's integration tests: loopback HTTP, a sample and the real template."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import openai
import pytest
from botocore.config import Config

from local_stack.httpbase import BackgroundServer
from local_stack.stack import REPO_ROOT, StackError, synthesize
from tests.unit.local_stack.sample import write_sample_assembly

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _headers(items: Any) -> dict[str, str]:
    merged: dict[str, str] = {}
    for key, value in items:
        merged[key.lower()] = f"{merged[key.lower()]}, {value}" if key.lower() in merged else value
    return merged


def http(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    """One request over loopback; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=60) as response:
            return Reply(response.status, _headers(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, _headers(error.headers.items()), error.read())


@pytest.fixture(scope="session")
def sample_template_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_assembly(tmp_path_factory.mktemp("sample-assembly"))


@pytest.fixture(scope="session")
def real_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's synthesized template: BYOM_TEMPLATE when given, else synthesized once."""
    given = os.environ.get("BYOM_TEMPLATE")
    if given:
        return Path(given)
    if not (REPO_ROOT / "app.py").is_file():
        pytest.skip("app.py does not exist yet: the CDK template cannot be synthesized")
    try:
        return synthesize(REPO_ROOT, tmp_path_factory.mktemp("cdk.out"))
    except StackError as error:
        pytest.fail(str(error))


# The stand-ins' clients; each test module starts the `openai_server` and `bedrock_server` it needs.


@pytest.fixture
def client(openai_server: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_server.url + "/v1", api_key="sk-local", max_retries=0)


@pytest.fixture
def bedrock(bedrock_server: BackgroundServer) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=bedrock_server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
