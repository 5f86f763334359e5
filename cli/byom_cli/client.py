"""The gateway's HTTP API as the CLI calls it: JSON in, JSON out, every failure one typed error
carrying the server's own message (its OpenAI error envelope) or a plain reason."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from byom_cli import __version__

TIMEOUT_SECONDS = 30.0
# What of a non-JSON error body (a proxy's HTML page) is worth showing.
MAX_ERROR_TEXT = 300


class ApiError(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, type_: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code

    def __str__(self) -> str:
        kind = " ".join(part for part in (self.type, self.code) if part)
        return f"{self.status}{f' {kind}' if kind else ''}: {self.message}"


class Unreachable(Exception):
    """No answer at all: DNS, refused connection, TLS, timeout."""


def segment(value: str) -> str:
    """A path segment as the routes expect it: an email's `@` or a `/` cannot change the route."""
    return quote(value, safe="")


def error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return ApiError(response.status_code, error["message"], error.get("type"), error.get("code"))
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        # API Gateway's own refusals (throttling, a missing route) carry `{"message": ...}`.
        return ApiError(response.status_code, body["message"])
    text = response.text.strip()[:MAX_ERROR_TEXT] or response.reason_phrase
    return ApiError(response.status_code, text)


class Gateway:
    """One base URL and one bearer key; works the same against the local stack and a deployed stage
    (`https://…/prod`: the stage path is kept, routes are joined under it)."""

    def __init__(self, url: str, key: str, transport: httpx.BaseTransport | None = None):
        self._url = url
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {key}", "User-Agent": f"byom-cli/{__version__}"},
            timeout=TIMEOUT_SECONDS,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path.lstrip("/"), json=json, params=query)
        except httpx.TimeoutException:
            raise Unreachable(f"{self._url} did not answer within {TIMEOUT_SECONDS:.0f} s") from None
        except httpx.HTTPError as error:
            raise Unreachable(f"Cannot reach {self._url}: {error.__class__.__name__}: {error}") from None
        if response.status_code >= 400:
            raise error_from(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "The server's answer is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
