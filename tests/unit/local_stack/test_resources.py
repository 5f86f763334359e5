"""Pure parts of resource creation: which secret holds the admin key, generated secret values."""

from __future__ import annotations

import json
import string

from local_stack.resources import CREATORS, _generate_secret_string, admin_secret_ids
from local_stack.template import Template
from tests.unit.local_stack.sample import sample_template


def test_the_admin_key_secret_is_the_one_named_by_admin_key_secret_arn() -> None:
    assert admin_secret_ids(Template(body=sample_template())) == {"AdminSecret"}


def test_generated_secrets_follow_the_generate_secret_string_spec() -> None:
    value = _generate_secret_string(
        {"PasswordLength": 40, "ExcludePunctuation": True, "ExcludeCharacters": "abc"}
    )
    assert len(value) == 40
    assert set(value) <= set(string.ascii_letters + string.digits) - set("abc")


def test_generated_secrets_can_be_json_documents() -> None:
    value = _generate_secret_string(
        {"SecretStringTemplate": '{"user": "u"}', "GenerateStringKey": "password"}
    )
    document = json.loads(value)
    assert document["user"] == "u" and len(document["password"]) == 32


def test_every_resource_type_of_the_byom_data_layer_has_a_creator() -> None:
    for resource_type in (
        "AWS::KMS::Key",
        "AWS::DynamoDB::Table",
        "AWS::SecretsManager::Secret",
        "AWS::S3::Bucket",
    ):
        assert resource_type in CREATORS
