"""Requests per minute per API key, as API Gateway usage plans enforce them (SPEC §8).

Each tenant has one usage plan on the API's stage; each of its keys has an API Gateway API key in
that plan, whose value the authorizer returns as `usageIdentifierKey`. A plan's throttle applies to
each API key separately ("the usage plan limit is applied per API key"), so the tenant's
`requests_per_minute` is a limit per key, as the spec says.

API Gateway throttles with a token bucket: `burstLimit` requests at once, refilled at `rateLimit`
per second (a number, fractions allowed; the burst is an integer). A per-minute limit maps onto it
as:

- rate = requests_per_minute / 60: sustained, a key gets exactly its limit each minute;
- burst = ten seconds' worth of that rate, at least 1: a client may send a small batch at once
  without being throttled, and no 60-second window sees more than 1 + 1/6 of the limit (burst
  plus a minute of refill). A burst of the full minute would let a key send twice its limit in
  its first minute; a burst of 1 would throttle any two concurrent calls of a 60 rpm key.

API Gateway applies usage plan throttling on a best-effort basis, and the stage's own throttle (and
the account's) still caps every key: a plan cannot raise a key above them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BURST_SECONDS = 10


@dataclass(frozen=True)
class Throttle:
    """A usage plan's throttle: `burst` requests at once, refilled at `rate_per_second`."""

    rate_per_second: float
    burst: int


@dataclass(frozen=True)
class UsageKey:
    """An API Gateway API key of one tenant key: its id, and the value the authorizer returns.

    The value identifies the key to its usage plan; with the API's key source AUTHORIZER, API
    Gateway takes it only from the authorizer, so it grants nothing to whoever knows it. Still, no
    route ever returns it."""

    id: str
    value: str


def throttle_for(requests_per_minute: int | None) -> Throttle | None:
    """The usage plan throttle of a per-minute limit; None: no throttle of the plan's own."""
    if requests_per_minute is None:
        return None
    if requests_per_minute < 1:
        raise ValueError("requests_per_minute must be at least 1")
    return Throttle(
        rate_per_second=requests_per_minute / 60,
        burst=max(1, math.ceil(requests_per_minute * BURST_SECONDS / 60)),
    )
