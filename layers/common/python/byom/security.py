"""API keys and outbound URLs: the pure rules, testable without AWS or sockets."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from byom.errors import InvalidRequest

API_KEY_PREFIX = "byom-"

# Names that resolve to an instance-metadata service on the major clouds.
_METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
_METADATA_ADDRESSES = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, EC2/ECS/Lambda metadata and credentials
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::/32"),  # EC2 IPv6 metadata
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """Keys are stored and looked up only by this digest: a table dump reveals no usable key."""
    return hashlib.sha256(key.encode()).hexdigest()


def same_secret(presented: str, expected: str) -> bool:
    return hmac.compare_digest(hash_api_key(presented), hash_api_key(expected))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Numeric hosts such as 2852039166 or 0xA9FEA9FE are IPv4 addresses to most HTTP clients.
    try:
        return ipaddress.IPv4Address(int(host, 0))
    except (ValueError, ipaddress.AddressValueError):
        return None


def check_outbound_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool
) -> str | None:
    """Why a resolved address may not be called, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in network for network in _METADATA_ADDRESSES):
        return "link-local and instance-metadata addresses are not allowed"
    if address.is_unspecified or address.is_multicast:
        return "unspecified and multicast addresses are not allowed"
    if address.is_loopback and not allow_loopback:
        return "loopback addresses are allowed only in the local stack"
    return None


def validate_base_url(url: str, *, allow_loopback_http: bool) -> str:
    """Return the normalised URL or raise InvalidRequest saying why it is refused.

    In the cloud only https is accepted and loopback is refused (the Lambda runtime API lives
    there); the local stack also accepts http on loopback so users can point at Ollama or vLLM.
    """
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequest("base_url must be an absolute https:// URL", param="base_url")
    if parts.username or parts.password:
        raise InvalidRequest("base_url must not carry credentials; use api_key", param="base_url")
    if host in _METADATA_HOSTS:
        raise InvalidRequest("base_url must not target an instance-metadata host", param="base_url")
    address = _literal_address(host)
    loopback = host == "localhost" or host.endswith(".localhost") or bool(address and address.is_loopback)
    if address is not None:
        reason = check_outbound_address(address, allow_loopback=allow_loopback_http)
        if reason:
            raise InvalidRequest(f"base_url refused: {reason}", param="base_url")
    if loopback and not allow_loopback_http:
        raise InvalidRequest(
            "base_url refused: loopback addresses are allowed only in the local stack", param="base_url"
        )
    if parts.scheme == "http" and not loopback:
        raise InvalidRequest(
            "base_url must use https (plain http only for loopback in the local stack)", param="base_url"
        )
    return url.strip().rstrip("/")
