import pytest
from byom.errors import InvalidRequest
from byom.security import bearer_token, hash_api_key, same_secret, validate_base_url


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://my-resource.openai.azure.com/openai",
        "https://10.0.3.7:8000/v1",  # a vLLM server inside the VPC
        "https://vllm.corp.internal/v1",
    ],
)
def test_https_urls_are_accepted_in_the_cloud(url: str) -> None:
    assert validate_base_url(url, allow_loopback_http=False) == url


def test_trailing_slash_is_dropped() -> None:
    assert validate_base_url("https://example.com/v1/", allow_loopback_http=False) == "https://example.com/v1"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/v1",
        "ftp://example.com",
        "example.com",
        "https://user:pass@example.com",
    ],
)
def test_non_https_or_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate_base_url(url, allow_loopback_http=True)
    assert refused.value.param == "base_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.170.2/v2/credentials",  # ECS task credentials
        "http://2852039166/",  # 169.254.169.254 written as one number
        "http://0xA9FEA9FE/",
        "https://[fe80::1]/",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:169.254.169.254]/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://instance-data/latest",
    ],
)
def test_metadata_and_link_local_targets_are_refused_even_locally(url: str) -> None:
    with pytest.raises(InvalidRequest, match=r"metadata|link-local"):
        validate_base_url(url, allow_loopback_http=True)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:11434/v1", "http://localhost:8000/v1", "https://[::1]:8443"]
)
def test_loopback_is_allowed_only_in_the_local_stack(url: str) -> None:
    assert validate_base_url(url, allow_loopback_http=True)
    with pytest.raises(InvalidRequest, match="local stack"):
        validate_base_url(url, allow_loopback_http=False)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        (None, None),
        ("", None),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_keys_are_hashed_with_sha256() -> None:
    assert hash_api_key("byom-x") == "dd29b6665b9ff5d244a18f03c527a2fee02abd7a4961f9506bb9736f365ed041"
    assert hash_api_key("byom-x") != hash_api_key("byom-y")


def test_same_secret_compares_values() -> None:
    assert same_secret("admin-key", "admin-key")
    assert not same_secret("admin-key", "admin-kez")
