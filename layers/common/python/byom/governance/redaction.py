"""The built-in PII and secret detector, and the per-request redactor (SPEC §8).

Pure logic, offline: a detector finds values in a text; a `Redactor`, one per request, masks them
with typed, numbered placeholders (`<EMAIL_1>`) and puts them back in the answer, streams included.

Each built-in type is found from something literal (an '@', `-----BEGIN `, `eyJ`, a key's prefix)
or, for the numeric types and IBANs, inside the runs of digits one pass finds; its own precompiled
regex then runs there only, and every match is validated (Luhn, mod-97, `ipaddress`, a JWT header
that decodes) before it counts. Overlapping findings are resolved once: the longest wins, then the
earliest. Masking shortens a text, which can bring a context word within reach of a 40-character
token the secret-key rule skipped before; that is the one way masked text can hold a new finding.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import re._constants as sre_constants
import re._parser as sre_parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

from byom.governance.policy import BUILTIN_TYPES

MAX_CUSTOM_PATTERN_LENGTH = 512


@dataclass(frozen=True)
class Finding:
    type: str
    """A built-in type or a custom pattern's name."""
    start: int
    end: int
    value: str


class Detector(Protocol):
    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings, sorted by start."""
        ...


# -- validators -------------------------------------------------------------------------------------


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Issuer prefixes of the card networks people paste (Visa, Mastercard, Amex, Discover, Diners, JCB,
# UnionPay, Maestro) and the lengths each issues: a Luhn-valid number outside them (an order number,
# a millisecond timestamp) is not a card.
_CARD_NETWORKS: tuple[tuple[re.Pattern[str], frozenset[int]], ...] = (
    (re.compile(r"4"), frozenset({13, 16, 19})),
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)"), frozenset({16})),
    (re.compile(r"3[47]"), frozenset({15})),
    (re.compile(r"6(?:011|5|4[4-9])"), frozenset({16, 19})),
    (re.compile(r"3(?:0[0-5]|[689])"), frozenset({14, 16, 19})),
    (re.compile(r"35(?:2[89]|[3-8]\d)"), frozenset({16, 19})),
    (re.compile(r"62"), frozenset({16, 17, 18, 19})),
    (re.compile(r"5[06-9]|6\d"), frozenset(range(13, 20))),
)


def _card_ok(value: str) -> bool:
    digits = value.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or not _luhn(digits):
        return False
    return any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_NETWORKS)


# IBAN length per country (ISO 13616 registry).
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def _iban_ok(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _digit_count(value: str) -> int:
    return sum(ch.isdigit() for ch in value)


def _b64url_json(segment: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        return None


def _varied(value: str) -> bool:
    """At least two of lower case, upper case and digits: a generated key, not a hyphenated name."""
    return (
        sum(
            (
                any(c.islower() for c in value),
                any(c.isupper() for c in value),
                any(c.isdigit() for c in value),
            )
        )
        >= 2
    )


# -- the built-in types -----------------------------------------------------------------------------
#
# A regex in CPython scans fast only from a literal prefix (a plain `re.search` tries every position
# otherwise, ~25 ns each): each type is found from something literal (an '@', a '-----BEGIN ', an
# 'eyJ', a key's prefix), or, for the numeric types, inside the runs of digits and separators one
# character-class pass finds; its own regex then runs on that small window only.

_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9][\w.%+-]{0,63}\Z")
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![\w-])"
)
_EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.%+-")

# Runs of digits and the separators numbers are written with, 7 characters at least (1.2.3.4), and
# the check digits of anything that starts like an IBAN (two capitals, two digits): one pass finds
# where every numeric type and the IBAN can be (a class as the first item keeps the scan in C).
_NUMERIC_RUN = re.compile(r"[+(0-9](?:[0-9 .()/+-]{6,}|(?<=[A-Z]{2}[0-9])[0-9])")

# Phones: an international number (+ and a country code; 8 to 15 digits, separators optional), or a
# national one written with its usual grouping, which is then required: a plain run of digits is an
# id, not a phone. Never inside a word, a number, a path or a date (no '/', ':' or a date's 4-2-2).
_PHONE = re.compile(
    r"(?<![\w+/.:-])(?:"
    # international: +CC, an optional (0) or (area), then groups
    r"\+[1-9]\d{0,2}(?:[ .-]?\(0?\d{1,4}\))?[ .-]?\d{1,14}(?:[ .-]\d{1,10}){0,5}"
    # national ones never right after another number ("DE88 3704 0044 0532 0130 00" holds no phone)
    r"|(?<!\d )(?:"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-0199
    r"(?:1[ .-])?\([2-9]\d{2}\)[ ]?\d{3}[ .-]\d{4}"
    r"|(?:1[ .-])?[2-9]\d{2}([ .-])\d{3}\1\d{4}"
    # trunk-prefixed national numbers: UK 020 7946 0958, DE 030/12345678, FR 01 23 45 67 89, IN 011-2345-6789
    r"|\(0[1-9]\d{0,3}\)[ ]?\d{2,8}(?:[ .-]\d{2,4}){0,3}"
    r"|0[1-9]\d{0,3}[ /.-]\d{2,8}(?:[ .-]\d{2,4}){0,3}"
    # Indian mobile without its trunk prefix: 98765 43210
    r"|[6-9]\d{4} \d{5}"
    r"))(?![\w]|[.:/-]\d)"
)

_CARD = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w]|[.-]\d)")

_SSN = re.compile(r"(?<![\w.-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w]|[.-]\d)")

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.-]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w-]|\.\d)")

_IBAN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![\w-])")

# Two colons with at most four hex digits between them find a candidate; from the start of its
# hex-and-colon token, the candidate regex (an IPv4 tail and a zone allowed) takes it whole and
# `ipaddress` decides, so a time (12:30:45) or a MAC address never passes.
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6 = re.compile(
    r"(?<![\w:.])[0-9A-Fa-f:]{2,39}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?:%[0-9A-Za-z]{1,16})?(?![\w:]|\.\d)"
)
_HEX_AND_COLON = frozenset("0123456789abcdefABCDEF:")

_AWS_ACCESS_KEY_ID = re.compile(
    r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)[A-Z0-9]{16}(?![A-Za-z0-9])"
)

# An AWS secret access key is 40 base64 characters, which a SHA-1 or a random token can also be.
# The rule: a standalone run of exactly 40 [A-Za-z0-9/+], with upper- and lower-case letters (so no
# hex digest, git SHA or all-caps id ever fires), that starts within 80 characters after the word
# "aws" or "secret" (any case, so `aws_secret_access_key = ...`, `SecretAccessKey: ...` and
# `AWS_SECRET=...` count) or after an access key id's "AKIA"/"ASIA".
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_SECRET_CONTEXT = ("aws", "secret", "akia", "asia")  # searched in the lower-cased text
_AWS_SECRET_WINDOW = 80

_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----"
    # the whole block; a block cut short (no END line) is masked up to the end of its base64 body
    r"(?:[\s\S]{0,16384}?-----END \1PRIVATE KEY-----|[A-Za-z0-9+/=\s:,-]*)"
)

_JWT = re.compile(r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?![\w-]|\.[\w-])")

# Provider API keys, by their documented prefixes: OpenAI `sk-` (`sk-proj-`, `sk-svcacct-` too) and
# Anthropic `sk-ant-`, 20+ characters after `sk-`; Stripe `sk_live_`/`rk_test_`...; this gateway's
# own `byom-` keys (32+ URL-safe characters: byom.security issues `token_urlsafe(32)`, hex keys
# match too); Slack `xoxb-`/`xoxp-`/`xapp-`...; GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` and
# `github_pat_`; Google `AIza` + 35; Hugging Face `hf_`. A body that is a plain hyphenated name
# (`sk-learn-...`) is kept out by requiring two of lower case, upper case and digits.
# One pattern per literal prefix, run only when the text holds it (a literal is found in C at
# memchr speed; an alternation of prefixes would be tried at every 's', 'g', 'x'...).
_API_KEYS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (prefix, re.compile(prefix + rf"(?<![\w-]{prefix})(?:{body})(?![\w-])"))
    for prefix, body in (
        ("sk", r"-[A-Za-z0-9_-]{20,}|_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("rk_", r"(?:live|test)_[A-Za-z0-9]{16,}"),
        ("byom-", r"[A-Za-z0-9_-]{32,}"),
        ("xox", r"[abposr]-[A-Za-z0-9-]{10,}"),
        ("xapp-", r"[A-Za-z0-9-]{10,}"),
        ("gh", r"[pousr]_[A-Za-z0-9]{36,255}"),
        ("github_pat_", r"[A-Za-z0-9_]{22,255}"),
        ("AIza", r"[0-9A-Za-z_-]{35}"),
        ("hf_", r"[A-Za-z0-9]{30,}"),
    )
)

Scan = Callable[[str], Iterator[Finding]]


def _finding(kind: str, match: re.Match[str]) -> Finding:
    return Finding(kind, match.start(), match.end(), match.group())


def _scan_email(text: str) -> Iterator[Finding]:
    at = text.find("@")
    while at != -1:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1) if local else None
        if local and domain and (local.start() == 0 or text[local.start() - 1] not in _EMAIL_LOCAL_CHARS):
            yield Finding("email", local.start(), domain.end(), text[local.start() : domain.end()])
        at = text.find("@", (domain.end() if domain else at) + 1)


_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")


def _phone_ok(value: str) -> bool:
    if _SSN_SHAPE.fullmatch(value):
        return False  # an SSN's shape, valid or not, is no phone format
    digits = _digit_count(value)
    if value.startswith("+"):
        return 8 <= digits <= 15
    return 9 <= digits <= 13


@dataclass(frozen=True)
class _Numeric:
    type: str
    pattern: re.Pattern[str]
    may_match: Callable[[str, int], bool]
    """On the run and its number of digits: False when the pattern cannot match in it."""
    accept: Callable[[str], bool]


_NUMERIC: dict[str, _Numeric] = {
    n.type: n
    for n in (
        _Numeric("payment_card", _CARD, lambda _run, digits: digits >= 13, _card_ok),
        _Numeric("us_ssn", _SSN, lambda run, digits: digits >= 9 and "-" in run, lambda _: True),
        _Numeric("ipv4", _IPV4, lambda run, digits: digits >= 4 and run.count(".") >= 3, lambda _: True),
        _Numeric("phone", _PHONE, lambda run, digits: digits >= 9 or (digits == 8 and "+" in run), _phone_ok),
    )
}
_SEPARATORS = str.maketrans("", "", " .()/+-")


def _numeric_scan(kinds: Sequence[_Numeric], iban: bool) -> Scan:
    def scan(text: str) -> Iterator[Finding]:
        size = len(text)
        for run in _NUMERIC_RUN.finditer(text):
            start, end = run.span()
            if iban and start >= 2 and text[start - 2 : start].isupper():
                found = _iban_at(text, start - 2)
                if found:
                    yield found
            value = run.group()
            digits = len(value.translate(_SEPARATORS))
            if digits < 4:
                continue
            # two characters past the run, for the patterns' look-ahead (a "-5" that ends a date)
            stop = min(size, end + 2)
            for kind in kinds:
                if kind.may_match(value, digits):
                    for match in kind.pattern.finditer(text, start, stop):
                        if kind.accept(match.group()):
                            yield _finding(kind.type, match)

    return scan


def _iban_at(text: str, start: int) -> Finding | None:
    """The IBAN at `start`, cut to its country's length, if its checksum holds."""
    match = _IBAN.match(text, start)
    if match is None:
        return None
    value = match.group()
    length = _IBAN_LENGTHS.get(value[:2])
    compact = value.replace(" ", "")
    if length is None or len(compact) < length:
        return None
    end, seen = 0, 0
    while seen < length:
        if value[end] != " ":
            seen += 1
        end += 1
    if end < len(value) and value[end] != " ":
        return None  # the country's length ends inside a group: not an IBAN
    if not _iban_ok(compact[:length]):
        return None
    return Finding("iban", start, start + end, value[:end])


def _scan_ipv6(text: str) -> Iterator[Finding]:
    covered = 0
    for hint in _IPV6_HINT.finditer(text):
        if hint.start() < covered:
            continue
        start = hint.start()
        floor = max(0, start - 40)
        while start > floor and text[start - 1] in _HEX_AND_COLON:
            start -= 1
        match = _IPV6.match(text, start)
        if match is None:
            continue
        covered = match.end()
        value = match.group()
        if len(value) < 6 or ("::" not in value and value.count(":") < 6):
            continue  # `::1`, `a::b`: too short to be someone's address; `12:30:45` too few groups
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        yield _finding("ipv6", match)


def _scan_aws_secret(text: str) -> Iterator[Finding]:
    lower = text.lower()
    size = len(text)
    seen: set[int] = set()
    for word in _AWS_SECRET_CONTEXT:
        at = lower.find(word)
        while at != -1:
            after = at + len(word)
            for match in _AWS_SECRET.finditer(text, after, min(size, after + _AWS_SECRET_WINDOW + 41)):
                start, end = match.span()
                if start in seen or start > after + _AWS_SECRET_WINDOW:
                    continue
                if end < size and text[end] in _B64_CHARS:
                    continue  # cut by the window: longer than 40
                value = match.group()
                if any(c.isupper() for c in value) and any(c.islower() for c in value):
                    seen.add(start)
                    yield _finding("aws_secret_access_key", match)
            at = lower.find(word, after)


_B64_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+=")


def _literal_scan(kind: str, needle: str, pattern: re.Pattern[str], accept: Callable[[str], bool]) -> Scan:
    def scan(text: str) -> Iterator[Finding]:
        if needle in text:
            for match in pattern.finditer(text):
                if accept(match.group()):
                    yield _finding(kind, match)

    return scan


def _jwt_ok(value: str) -> bool:
    header = _b64url_json(value.split(".", 1)[0])
    return isinstance(header, dict) and "alg" in header


def _scan_api_key(text: str) -> Iterator[Finding]:
    for prefix, pattern in _API_KEYS:
        if prefix in text:
            for match in pattern.finditer(text):
                if _varied(match.group()[len(prefix) :]):
                    yield _finding("api_key", match)


_SCANS: dict[str, Scan] = {
    "email": _scan_email,
    "ipv6": _scan_ipv6,
    "aws_access_key_id": _literal_scan("aws_access_key_id", "A", _AWS_ACCESS_KEY_ID, lambda _: True),
    "aws_secret_access_key": _scan_aws_secret,
    "private_key": _literal_scan("private_key", "-----BEGIN ", _PRIVATE_KEY, lambda _: True),
    "jwt": _literal_scan("jwt", "eyJ", _JWT, _jwt_ok),
    "api_key": _scan_api_key,
}
assert set(_SCANS) | set(_NUMERIC) | {"iban"} == set(BUILTIN_TYPES), "every built-in type has a scan"


def _resolve(findings: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping, sorted by start: the longest finding wins, then the earliest, then the first given."""
    ordered = sorted(findings, key=lambda f: f.start)
    if all(a.end <= b.start for a, b in pairwise(ordered)):
        return ordered  # the common case: nothing overlaps
    ranked = sorted(ordered, key=lambda f: (f.start - f.end, f.start))
    kept: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    kept.sort(key=lambda f: f.start)
    return kept


class BuiltinDetector:
    """The built-in types that are on, and the tenant's custom patterns (already validated)."""

    def __init__(self, types: Iterable[str] = BUILTIN_TYPES, custom: Sequence[tuple[str, str]] = ()) -> None:
        wanted = set(types)
        unknown = wanted - set(BUILTIN_TYPES)
        if unknown:
            raise ValueError(f"unknown built-in type '{sorted(unknown)[0]}'")
        ordered = [t for t in BUILTIN_TYPES if t in wanted]
        self._scans: list[Scan] = [_SCANS[t] for t in ordered if t in _SCANS]
        # the most specific numeric types first: a tie (the same span) goes to the first found
        numeric = [n for t, n in _NUMERIC.items() if t in wanted]
        if numeric or "iban" in wanted:
            self._scans.insert(0, _numeric_scan(numeric, "iban" in wanted))
        self._custom = [(name, re.compile(pattern)) for name, pattern in custom]

    def find(self, text: str) -> list[Finding]:
        found = [finding for scan in self._scans for finding in scan(text)]
        for name, pattern in self._custom:
            found.extend(_finding(name, m) for m in pattern.finditer(text) if m.end() > m.start())
        return _resolve(found) if len(found) > 1 else found


class ValueDetector:
    """Finds known values by exact search: what another detector (Bedrock Guardrails) reported."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = {value: kind for value, kind in values.items() if value}

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for value, kind in self._values.items():
            start = text.find(value)
            while start != -1:
                found.append(Finding(kind, start, start + len(value), value))
                start = text.find(value, start + len(value))
        return _resolve(found)


class CombinedDetector:
    """Several detectors as one, their overlaps resolved as within one (the longest, then the earliest)."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self._detectors = list(detectors)

    def find(self, text: str) -> list[Finding]:
        return _resolve(f for detector in self._detectors for f in detector.find(text))


# -- custom patterns --------------------------------------------------------------------------------

_ALL: frozenset[int] = frozenset({-1})
"""A first-character set standing for "anything" (., a negated class, a category outside ASCII)."""

_CATEGORIES: dict[Any, frozenset[int]] = {
    sre_constants.CATEGORY_DIGIT: frozenset(map(ord, "0123456789")),
    sre_constants.CATEGORY_SPACE: frozenset(map(ord, " \t\n\r\f\v")),
    sre_constants.CATEGORY_WORD: frozenset(
        map(ord, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    ),
}
_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)
_POSSESSIVE_REPEAT = getattr(sre_constants, "POSSESSIVE_REPEAT", None)
_ATOMIC_GROUP = getattr(sre_constants, "ATOMIC_GROUP", None)


def _overlap(a: frozenset[int], b: frozenset[int]) -> bool:
    return bool(a and b) and (a is _ALL or b is _ALL or not a.isdisjoint(b))


def _class_first(items: Any) -> frozenset[int]:
    chars: set[int] = set()
    for op, av in items:
        if op is sre_constants.NEGATE:
            return _ALL
        if op is sre_constants.LITERAL:
            chars.add(av)
        elif op is sre_constants.RANGE:
            if av[1] - av[0] > 512:
                return _ALL
            chars.update(range(av[0], av[1] + 1))
        elif op is sre_constants.CATEGORY and av in _CATEGORIES:
            chars |= _CATEGORIES[av]
        else:
            return _ALL
    return frozenset(chars)


def _first(items: Any) -> tuple[frozenset[int], bool]:
    """The characters a sequence can start with, and whether it can match the empty string."""
    chars: frozenset[int] = frozenset()
    for item in items:
        item_first, nullable = _item_first(item)
        chars = _ALL if _ALL in (chars, item_first) else chars | item_first
        if not nullable:
            return chars, False
    return chars, True


def _item_first(item: tuple[Any, Any]) -> tuple[frozenset[int], bool]:
    op, av = item
    if op is sre_constants.LITERAL:
        return frozenset({av}), False
    if op is sre_constants.IN:
        return _class_first(av), False
    if op in (sre_constants.NOT_LITERAL, sre_constants.ANY):
        return _ALL, False
    if op is sre_constants.SUBPATTERN:
        return _first(av[-1])
    if op is sre_constants.BRANCH:
        firsts = [_first(branch) for branch in av[1]]
        chars: frozenset[int] = frozenset()
        for f, _ in firsts:
            chars = _ALL if _ALL in (chars, f) else chars | f
        return chars, any(n for _, n in firsts)
    if op in _REPEATS or op is _POSSESSIVE_REPEAT:
        chars, nullable = _first(av[2])
        return chars, nullable or av[0] == 0
    if op is _ATOMIC_GROUP:
        return _first(av)
    return frozenset(), True  # anchors and lookarounds consume nothing


def _children(item: tuple[Any, Any]) -> list[Any]:
    op, av = item
    if op is sre_constants.SUBPATTERN:
        return [av[-1]]
    if op is sre_constants.BRANCH:
        return list(av[1])
    if op in _REPEATS or op is _POSSESSIVE_REPEAT:
        return [av[2]]
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return [av[1]]
    if op is _ATOMIC_GROUP:
        return [av]
    return []


def _walk(items: Any, into_atomic: bool = True) -> Iterator[tuple[Any, Any]]:
    for item in items:
        yield item
        if not into_atomic and item[0] in (_ATOMIC_GROUP, _POSSESSIVE_REPEAT):
            continue  # never backtracks into: what it holds cannot multiply the ways to match
        for child in _children(item):
            yield from _walk(child, into_atomic)


def _flat(items: Any) -> list[tuple[Any, Any]]:
    """A sequence with its plain groups opened: `(a?a)` is the sequence a?, a."""
    out: list[tuple[Any, Any]] = []
    for item in items:
        if item[0] is sre_constants.SUBPATTERN:
            out.extend(_flat(item[1][-1]))
        else:
            out.append(item)
    return out


def _ambiguity(body: Any) -> str | None:
    """Why a repeated body can match one text in many ways, or None."""
    if body.getwidth()[0] == 0:
        return "a repeated group that can match the empty string"
    for op, av in _walk(body, into_atomic=False):
        if op in _REPEATS and av[1] > 1 and av[0] != av[1]:
            return "nested quantifiers (a repeat inside a repeat, like (a+)+)"
        if op is sre_constants.BRANCH:
            firsts = [_first(branch)[0] for branch in av[1]]
            for i, a in enumerate(firsts):
                if any(_overlap(a, b) for b in firsts[i + 1 :]):
                    return "a repeated alternation whose branches can start alike (like (a|aa)*)"
    # an optional element followed by what it can also start with, the next round's start included:
    # (a?a)+, and (a|aa)* which the parser turns into a(?:|a)
    items = _flat(body)
    if _optional_clash(items, _first(items)[0]):
        return "an optional element inside a repeat followed by one like it (like (a?a)+ or (a|aa)*)"
    return None


def _union(a: frozenset[int], b: frozenset[int]) -> frozenset[int]:
    return _ALL if _ALL in (a, b) else a | b


def _optional_clash(items: list[tuple[Any, Any]], after: frozenset[int]) -> bool:
    """Whether an optional element can start like what follows it (`after`: what follows the sequence)."""
    for i, item in enumerate(items):
        rest, rest_nullable = _first(items[i + 1 :])
        follow = _union(rest, after) if rest_nullable else rest
        first, nullable = _item_first(item)
        if nullable and first and _overlap(first, follow):
            return True
        if item[0] is sre_constants.BRANCH and any(_optional_clash(_flat(b), follow) for b in item[1][1]):
            return True
    return False


def validate_custom_pattern(pattern: str) -> None:
    """Refuse a tenant's pattern that cannot be run safely on every request; the message names why.

    Refused: longer than 512 characters, not compiling, matching the empty string, backreferences
    (matching them is not bounded by the text's length in general), and anything that can
    backtrack catastrophically: a repeat (max > 1) whose body holds a variable repeat of its own,
    can match the empty string, holds an alternation whose branches can start with the same
    character, or an optional element followed by one that can start alike. Possessive repeats
    and atomic groups never backtrack and are accepted. The check is conservative: some safe
    patterns (`(?:[A-Z]+-)+`) are refused; they can be written with a bounded count instead.
    Messages never quote the pattern: it may hold a secret.
    """
    if len(pattern) > MAX_CUSTOM_PATTERN_LENGTH:
        raise ValueError(f"pattern is longer than {MAX_CUSTOM_PATTERN_LENGTH} characters")
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as error:
        raise ValueError(f"pattern does not compile: {error.msg} (at position {error.pos})") from None
    except RecursionError:
        raise ValueError("pattern does not compile: nested too deeply") from None
    for op, av in _walk(parsed):
        if op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            raise ValueError("pattern uses a backreference, which cannot be matched in bounded time")
        if op in _REPEATS and av[1] > 1:
            reason = _ambiguity(av[2])
            if reason:
                raise ValueError(f"pattern can backtrack catastrophically: {reason}")
    if parsed.getwidth()[0] == 0:
        raise ValueError("pattern matches the empty string")


# -- the redactor -----------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_[1-9]\d*>")


class Redactor:
    """One per request: masks every text the provider would see with typed, numbered placeholders,
    consistent within the request (the same value, the same placeholder, across all texts), and
    puts the values back in answers.

    Holds the request's values in memory only: never log it, never keep it past the request.
    """

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self._placeholders: dict[tuple[str, str], str] = {}  # (type, value) -> placeholder
        self._values: dict[str, str] = {}  # placeholder -> value
        self._numbers: dict[str, int] = {}  # type -> last number issued
        self._seen: dict[str, set[str]] = {}  # type -> distinct values found
        self._longest = 0

    def mask(self, text: str) -> str:
        """The text with every finding replaced by its placeholder (`<EMAIL_1>`, `<EMPLOYEE_ID_1>`)."""
        findings = self._findings(text)
        if not findings:
            return text
        parts: list[str] = []
        at = 0
        for finding in findings:
            parts.append(text[at : finding.start])
            parts.append(self._placeholder(finding))
            at = finding.end
        parts.append(text[at:])
        return "".join(parts)

    def scan(self, text: str) -> list[Finding]:
        """The findings only (block mode); they are counted as mask counts them."""
        findings = self._findings(text)
        for finding in findings:
            self._seen.setdefault(finding.type, set()).add(finding.value)
        return findings

    @property
    def counts(self) -> dict[str, int]:
        """Distinct values found per type in this request (for the audit record)."""
        return {kind: len(values) for kind, values in sorted(self._seen.items())}

    @property
    def found_types(self) -> list[str]:
        return sorted(self._seen)

    def restore(self, text: str) -> str:
        """Placeholders this redactor issued back to their values; any other `<...>` left as it is."""
        if not self._values or "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._values.get(m.group(), m.group()), text)

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self)

    def _findings(self, text: str) -> list[Finding]:
        findings = self._detector.find(text)
        if self._values and "<" in text:
            # text masked already (a retry, a repeated message): leave this request's placeholders be
            issued = [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text) if m.group() in self._values]
            if issued:
                findings = [f for f in findings if all(f.end <= s or f.start >= e for s, e in issued)]
        return findings

    def _placeholder(self, finding: Finding) -> str:
        key = (finding.type, finding.value)
        placeholder = self._placeholders.get(key)
        if placeholder is None:
            number = self._numbers.get(finding.type, 0) + 1
            self._numbers[finding.type] = number
            placeholder = f"<{finding.type.upper()}_{number}>"
            self._placeholders[key] = placeholder
            self._values[placeholder] = finding.value
            self._seen.setdefault(finding.type, set()).add(finding.value)
            self._longest = max(self._longest, len(placeholder))
        return placeholder

    def _is_partial(self, tail: str) -> bool:
        """Whether `tail` (starting with '<', no '>') can still become a placeholder this redactor issued."""
        return len(tail) < self._longest and any(p.startswith(tail) for p in self._values)


class StreamRestorer:
    """Restores a streamed answer chunk by chunk; a placeholder may be split over any number of chunks.

    Holds back only a trailing '<...' that is the start of a placeholder the redactor issued (so
    never more than the longest of them); text with no '<' goes out at once.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = ""

    def feed(self, chunk: str) -> str:
        """The restored text that is safe to emit now."""
        text = self._held + chunk if self._held else chunk
        self._held = ""
        cut = text.rfind("<")
        if cut != -1 and ">" not in text[cut:] and self._redactor._is_partial(text[cut:]):
            self._held = text[cut:]
            text = text[:cut]
        return self._redactor.restore(text)

    def flush(self) -> str:
        """What was held back, at the end of the stream."""
        held, self._held = self._held, ""
        return self._redactor.restore(held)
