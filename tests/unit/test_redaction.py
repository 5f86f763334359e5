"""The built-in detector, the per-request redactor and its stream restorer, and custom-pattern checks."""

from __future__ import annotations

from itertools import pairwise

import pytest
from byom.governance.policy import BUILTIN_TYPES
from byom.governance.redaction import (
    BuiltinDetector,
    CombinedDetector,
    Detector,
    Finding,
    Redactor,
    ValueDetector,
    validate_custom_pattern,
)

JWT_HS256 = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
JWT_RS256 = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiI0MiIsImV4cCI6MTcwMDAwMDAwMH0.c2lnbmF0dXJl"
JWT_NONE = "eyJhbGciOiJub25lIn0.eyJzdWIiOiI0MiJ9."
JWT_NO_ALG = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiI0MiJ9.c2ln"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAq7BFUpkGp3+LQmlQ\n"
    "Yx2TxQ9Ns2XWZb8dXx1vZx0CAwEAAQ==\n-----END PRIVATE KEY-----"
)
RSA_PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAwm1c\n-----END RSA PRIVATE KEY-----"
EC_PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIbq\n-----END EC PRIVATE KEY-----"
OPENSSH_PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
)
BYOM_KEY = "byom-Qm9yZWFsaXNVbmlxdWVLZXlGb3JUZXN0aW5nMTIz"

CASES: list[tuple[str, list[tuple[str, str]]]] = [
    # -- email
    ("write to jane.doe@example.com today", [("email", "jane.doe@example.com")]),
    ("<bob+tag@mail.example.co.uk>", [("email", "bob+tag@mail.example.co.uk")]),
    ("ops_team@sub-domain.example.org.", [("email", "ops_team@sub-domain.example.org")]),
    ("UPPER.Case@Example.COM, then", [("email", "UPPER.Case@Example.COM")]),
    ("a@b.io and c.d@e.fr", [("email", "a@b.io"), ("email", "c.d@e.fr")]),
    ("mailto:x_y@example.net?subject=hi", [("email", "x_y@example.net")]),
    ("the @mention and user@localhost are not addresses", []),
    ("decorator @app.get('/x') on line 3", []),
    ("price: 3@5 each", []),
    # -- phone: international
    ("call +1 415 555 0132 now", [("phone", "+1 415 555 0132")]),
    ("call +1 (415) 555-0132.", [("phone", "+1 (415) 555-0132")]),
    ("UK office +44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
    ("UK mobile +44 7700 900123", [("phone", "+44 7700 900123")]),
    ("+44 (0)20 7946 0958 switchboard", [("phone", "+44 (0)20 7946 0958")]),
    ("Berlin +49 30 12345678", [("phone", "+49 30 12345678")]),
    ("Paris +33 1 23 45 67 89", [("phone", "+33 1 23 45 67 89")]),
    ("Paris +33.1.23.45.67.89", [("phone", "+33.1.23.45.67.89")]),
    ("Mumbai +91 98765 43210", [("phone", "+91 98765 43210")]),
    ("E.164 +447700900123 stored", [("phone", "+447700900123")]),
    ("Tokyo +81-3-1234-5678", [("phone", "+81-3-1234-5678")]),
    # -- phone: national
    ("(555) 123-4567 is the desk", [("phone", "(555) 123-4567")]),
    ("ring 555-123-4567", [("phone", "555-123-4567")]),
    ("ring 555.123.4567", [("phone", "555.123.4567")]),
    ("ring 555 123 4567", [("phone", "555 123 4567")]),
    ("toll free 1-800-555-0199", [("phone", "1-800-555-0199")]),
    ("London 020 7946 0958", [("phone", "020 7946 0958")]),
    ("mobile 07700 900123", [("phone", "07700 900123")]),
    ("Bristol 0117 496 0123", [("phone", "0117 496 0123")]),
    ("Berlin 030 12345678", [("phone", "030 12345678")]),
    ("Munich 089/1234567", [("phone", "089/1234567")]),
    ("Berlin (030) 1234567", [("phone", "(030) 1234567")]),
    ("Handy 0151 23456789", [("phone", "0151 23456789")]),
    ("Paris 01 23 45 67 89", [("phone", "01 23 45 67 89")]),
    ("portable 06.12.34.56.78", [("phone", "06.12.34.56.78")]),
    ("Delhi 011-2345-6789", [("phone", "011-2345-6789")]),
    ("mobile 98765 43210", [("phone", "98765 43210")]),
    # -- phone: what must not fire
    ("released 2024-01-15", []),
    ("released 15/01/2024", []),
    ("released 01/02/2024 and 15.01.2024", []),
    ("at 12:30:45 sharp", []),
    ("order ORD-2024-000123 shipped", []),
    ("invoice INV-2024-0042-17 is due", []),
    ("version 10.0.19041.1 installed", []),
    ("id 12345678901 only", []),
    ("total 1234567890", []),
    ("timestamp 1700000000000", []),
    ("build 20240115-1230", []),
    ("range 2020-2024 and 1999-2001", []),
    ("ISBN 978-3-16-148410-0", []),
    # -- payment card
    ("card 4111 1111 1111 1111 ok", [("payment_card", "4111 1111 1111 1111")]),
    ("card 4111-1111-1111-1111", [("payment_card", "4111-1111-1111-1111")]),
    ("card 4111111111111111.", [("payment_card", "4111111111111111")]),
    ("mc 5555555555554444", [("payment_card", "5555555555554444")]),
    ("mc 5105 1051 0510 5100", [("payment_card", "5105 1051 0510 5100")]),
    ("mc 2-series 2223003122003222", [("payment_card", "2223003122003222")]),
    ("amex 378282246310005", [("payment_card", "378282246310005")]),
    ("amex 3782 822463 10005", [("payment_card", "3782 822463 10005")]),
    ("discover 6011111111111117", [("payment_card", "6011111111111117")]),
    ("jcb 3530111333300000", [("payment_card", "3530111333300000")]),
    ("diners 30569309025904", [("payment_card", "30569309025904")]),
    ("visa 4012888888881881", [("payment_card", "4012888888881881")]),
    ("luhn fails 4111111111111112", []),
    ("luhn fails 4111 1111 1111 1113", []),
    ("luhn ok but no issuer 1234567812345670", []),
    ("luhn ok but no issuer 8888888888888888", []),
    ("order number 0000000000000000", []),
    ("too long 41111111111111111111111", []),
    # -- US SSN
    ("ssn 123-45-6789", [("us_ssn", "123-45-6789")]),
    ("SSN: 078-05-1120.", [("us_ssn", "078-05-1120")]),
    ("ssn 536-22-1234, filed", [("us_ssn", "536-22-1234")]),
    ("area 000: 000-12-3456", []),
    ("area 666: 666-12-3456", []),
    ("area 9xx: 900-12-3456", []),
    ("area 9xx: 987-65-4321", []),
    ("group 00: 123-00-4567", []),
    ("serial 0000: 123-45-0000", []),
    ("part of an id: X-123-45-6789", []),
    ("longer: 123-45-67890", []),
    # -- IBAN
    ("iban DE89 3704 0044 0532 0130 00", [("iban", "DE89 3704 0044 0532 0130 00")]),
    ("iban DE89370400440532013000.", [("iban", "DE89370400440532013000")]),
    ("iban GB82 WEST 1234 5698 7654 32", [("iban", "GB82 WEST 1234 5698 7654 32")]),
    ("iban GB82WEST12345698765432", [("iban", "GB82WEST12345698765432")]),
    ("iban FR14 2004 1010 0505 0001 3M02 606", [("iban", "FR14 2004 1010 0505 0001 3M02 606")]),
    ("iban NL91ABNA0417164300 paid", [("iban", "NL91ABNA0417164300")]),
    ("iban CH9300762011623852957", [("iban", "CH9300762011623852957")]),
    ("iban BE68 5390 0754 7034", [("iban", "BE68 5390 0754 7034")]),
    ("wrong check digits DE88 3704 0044 0532 0130 00", []),
    ("wrong check digits GB83WEST12345698765432", []),
    ("unknown country ZZ89370400440532013000", []),
    ("too short DE89 3704 0044", []),
    # -- IPv4
    ("host 192.168.1.10 down", [("ipv4", "192.168.1.10")]),
    ("from 10.0.0.1, to 8.8.8.8.", [("ipv4", "10.0.0.1"), ("ipv4", "8.8.8.8")]),
    ("cidr 172.16.254.1/24", [("ipv4", "172.16.254.1")]),
    ("edge 255.255.255.255", [("ipv4", "255.255.255.255")]),
    ("out of range 999.1.1.1", []),
    ("out of range 256.100.50.25", []),
    ("three parts 10.0.1", []),
    ("five parts 1.2.3.4.5", []),
    ("leading zeros 01.02.03.04", []),
    ("version v1.2.3.4 shipped", []),
    # -- IPv6
    ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 up", [("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")]),
    ("v6 2001:db8:85a3::8a2e:370:7334", [("ipv6", "2001:db8:85a3::8a2e:370:7334")]),
    ("link-local fe80::1ff:fe23:4567:890a%eth0", [("ipv6", "fe80::1ff:fe23:4567:890a%eth0")]),
    ("mapped ::ffff:192.0.2.128 here", [("ipv6", "::ffff:192.0.2.128")]),
    ("short 2001:db8::1.", [("ipv6", "2001:db8::1")]),
    ("time 12:30:45", []),
    ("mac 00:1A:2B:3C:4D:5E", []),
    ("c++ std::vector<int> and a::b", []),
    ("loopback ::1 is not personal", []),
    ("ratio 1:2:3", []),
    # -- AWS access key id
    ("key AKIAIOSFODNN7EXAMPLE", [("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE")]),
    ("temporary ASIAY34FZKBOKMUTVV7A", [("aws_access_key_id", "ASIAY34FZKBOKMUTVV7A")]),
    ("role AROAJ2UCCR6DPCEXAMPL", [("aws_access_key_id", "AROAJ2UCCR6DPCEXAMPL")]),
    ("too short AKIAIOSFODNN7EXAMPL", []),
    ("lower case akiaiosfodnn7example", []),
    ("inside a word XAKIAIOSFODNN7EXAMPLE", []),
    # -- AWS secret access key
    (f"aws_secret_access_key={AWS_SECRET}", [("aws_secret_access_key", AWS_SECRET)]),
    (f'"SecretAccessKey": "{AWS_SECRET}"', [("aws_secret_access_key", AWS_SECRET)]),
    (f"AWS creds: the second one is {AWS_SECRET}", [("aws_secret_access_key", AWS_SECRET)]),
    (f"a random token {AWS_SECRET} with no context", []),
    (f"aws checksum {SHA1}", []),
    (f"git commit {SHA1} in aws repo", []),
    ("aws hash " + "A" * 40, []),
    (f"aws too long {AWS_SECRET}Zz", []),
    # -- private key
    (f"key:\n{PEM}\nend", [("private_key", PEM)]),
    (f"{RSA_PEM}", [("private_key", RSA_PEM)]),
    (f"ec {EC_PEM} done", [("private_key", EC_PEM)]),
    (OPENSSH_PEM, [("private_key", OPENSSH_PEM)]),
    (
        "cut short -----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkq",
        [("private_key", "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkq")],
    ),
    ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", []),
    ("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", []),
    # -- JWT
    (f"Bearer {JWT_HS256}", [("jwt", JWT_HS256)]),
    (f"token={JWT_RS256}.", [("jwt", JWT_RS256)]),
    (f"unsigned {JWT_NONE} here", [("jwt", JWT_NONE)]),
    (f"no alg {JWT_NO_ALG}", []),
    ("not base64 json eyJhbGciOiJIUzI1NiIsIn.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig", []),
    ("two segments eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0", []),
    # -- provider API keys
    (
        "openai sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4",
        [("api_key", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4")],
    ),
    ("openai sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4", [("api_key", "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4")]),
    (
        "anthropic sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4_x-Y",
        [("api_key", "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4_x-Y")],
    ),
    (f"gateway {BYOM_KEY}", [("api_key", BYOM_KEY)]),
    ("gateway byom-0123456789abcdef0123456789abcdef", [("api_key", "byom-0123456789abcdef0123456789abcdef")]),
    (
        "slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        [("api_key", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx")],
    ),
    (
        "github ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        [("api_key", "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8")],
    ),
    (
        "github github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789",
        [("api_key", "github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789")],
    ),
    (
        "google AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        [("api_key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q")],
    ),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", [("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")]),
    ("sk-learn-is-a-python-package-name-here", []),
    ("the byom-gateway-fine-tuning-dataset-bucket", []),
    ("short sk-abc123", []),
    ("the placeholder byom-no-key", []),
    ("ask-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4 is one word", []),
    # -- identifiers that must not fire at all
    ("uuid 123e4567-e89b-12d3-a456-426614174000", []),
    ("uuid 550E8400-E29B-41D4-A716-446655440000", []),
    (f"git sha {SHA1}", []),
    ("sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", []),
    ("semver 2.14.3-rc.1+build.5", []),
    ("plain prose with no personal data at all.", []),
    ("", []),
    # -- several in one text
    (
        "Mail jane@example.com, call 555-123-4567, card 4111111111111111, ip 10.1.2.3.",
        [
            ("email", "jane@example.com"),
            ("phone", "555-123-4567"),
            ("payment_card", "4111111111111111"),
            ("ipv4", "10.1.2.3"),
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[f"{i:03d}" for i in range(len(CASES))])
def test_builtin_detector_finds_exactly_the_expected_values(
    text: str, expected: list[tuple[str, str]]
) -> None:
    found = BuiltinDetector().find(text)
    assert [(f.type, f.value) for f in found] == expected


def test_the_table_covers_every_builtin_type() -> None:
    assert {kind for _, expected in CASES for kind, _ in expected} == set(BUILTIN_TYPES)
    assert len(CASES) >= 120


def test_findings_carry_their_offsets_in_the_text() -> None:
    text = "x jane@example.com y 10.0.0.1"
    for finding in BuiltinDetector().find(text):
        assert text[finding.start : finding.end] == finding.value


def test_findings_are_sorted_and_do_not_overlap() -> None:
    text = " ".join(case for case, _ in CASES)
    found = BuiltinDetector().find(text)
    assert all(a.end <= b.start for a, b in pairwise(found))


def test_a_type_switched_off_is_not_found() -> None:
    detector = BuiltinDetector(types=[t for t in BUILTIN_TYPES if t != "email"])
    assert [f.type for f in detector.find("jane@example.com 10.0.0.1")] == ["ipv4"]


def test_an_unknown_builtin_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown built-in type"):
        BuiltinDetector(types=["email", "passport"])


def test_a_custom_pattern_finds_under_its_own_name() -> None:
    detector = BuiltinDetector(types=[], custom=[("employee_id", r"EMP-\d{6}")])
    assert detector.find("badge EMP-004211 issued") == [Finding("employee_id", 6, 16, "EMP-004211")]


def test_overlapping_findings_keep_the_longest() -> None:
    # the custom pattern matches inside the card number: the card, longer, wins
    detector = BuiltinDetector(types=["payment_card"], custom=[("digits", r"\d{4}")])
    found = detector.find("pay 4111111111111111")
    assert [(f.type, f.value) for f in found] == [("payment_card", "4111111111111111")]


def test_overlapping_findings_of_the_same_length_keep_the_earliest() -> None:
    detector = BuiltinDetector(types=[], custom=[("left", r"ab"), ("right", r"bc")])
    assert [(f.type, f.value) for f in detector.find("abc")] == [("left", "ab")]


def test_value_detector_finds_every_occurrence_of_known_values() -> None:
    detector = ValueDetector({"Jane Roe": "name", "ACME-77": "account"})
    found = detector.find("Jane Roe of ACME-77 wrote to Jane Roe")
    assert [(f.type, f.start) for f in found] == [("name", 0), ("account", 12), ("name", 29)]


def test_combined_detector_resolves_overlaps_across_detectors() -> None:
    combined: Detector = CombinedDetector(
        [BuiltinDetector(), ValueDetector({"jane": "name", "Jane Roe": "name"})]
    )
    found = combined.find("Jane Roe <jane@example.com>")
    assert [(f.type, f.value) for f in found] == [("name", "Jane Roe"), ("email", "jane@example.com")]


# -- masking ----------------------------------------------------------------------------------------


def test_mask_replaces_each_finding_with_a_typed_numbered_placeholder() -> None:
    redactor = Redactor(BuiltinDetector())
    assert redactor.mask("mail jane@example.com from 10.0.0.1") == "mail <EMAIL_1> from <IPV4_1>"


def test_the_same_value_gets_the_same_placeholder_across_texts() -> None:
    redactor = Redactor(BuiltinDetector())
    first = redactor.mask("jane@example.com and bob@example.com")
    second = redactor.mask("again jane@example.com")
    assert first == "<EMAIL_1> and <EMAIL_2>"
    assert second == "again <EMAIL_1>"


def test_counts_are_distinct_values_per_type() -> None:
    redactor = Redactor(BuiltinDetector())
    redactor.mask("jane@example.com, jane@example.com, bob@example.com")
    redactor.mask("card 4111111111111111 and jane@example.com")
    assert redactor.counts == {"email": 2, "payment_card": 1}
    assert redactor.found_types == ["email", "payment_card"]


def test_a_custom_pattern_is_masked_under_its_upper_cased_name() -> None:
    redactor = Redactor(BuiltinDetector(custom=[("employee_id", r"EMP-\d{6}")]))
    assert redactor.mask("EMP-004211 and EMP-004212") == "<EMPLOYEE_ID_1> and <EMPLOYEE_ID_2>"


def test_a_type_switched_off_is_left_in_the_text() -> None:
    redactor = Redactor(BuiltinDetector(types=["phone"]))
    assert redactor.mask("jane@example.com 555-123-4567") == "jane@example.com <PHONE_1>"


def test_text_without_findings_comes_back_unchanged() -> None:
    redactor = Redactor(BuiltinDetector())
    assert redactor.mask("nothing here") == "nothing here"
    assert redactor.counts == {}


@pytest.mark.parametrize("text", [text for text, expected in CASES if expected])
def test_masked_text_has_nothing_left_to_detect(text: str) -> None:
    redactor = Redactor(BuiltinDetector())
    masked = redactor.mask(text)
    assert BuiltinDetector().find(masked) == []
    assert redactor.mask(masked) == masked


def test_masking_masked_text_again_leaves_the_placeholders_alone() -> None:
    redactor = Redactor(BuiltinDetector(custom=[("number", r"\d+")]))
    once = redactor.mask("id 42")
    assert once == "id <NUMBER_1>"
    assert redactor.mask(once) == once


def test_scan_returns_findings_and_counts_them_without_masking() -> None:
    redactor = Redactor(BuiltinDetector())
    found = redactor.scan("card 4111111111111111 ssn 123-45-6789")
    assert [f.type for f in found] == ["payment_card", "us_ssn"]
    assert redactor.found_types == ["payment_card", "us_ssn"]
    assert redactor.counts == {"payment_card": 1, "us_ssn": 1}


# -- restoring --------------------------------------------------------------------------------------


def _masked() -> tuple[Redactor, str]:
    redactor = Redactor(BuiltinDetector())
    masked = redactor.mask("Write to jane@example.com or bob@example.com, card 4111111111111111")
    assert masked == "Write to <EMAIL_1> or <EMAIL_2>, card <PAYMENT_CARD_1>"
    return redactor, masked


def test_restore_puts_every_value_back() -> None:
    redactor, masked = _masked()
    assert redactor.restore(masked) == "Write to jane@example.com or bob@example.com, card 4111111111111111"


def test_restore_leaves_a_placeholder_it_did_not_issue() -> None:
    redactor, _ = _masked()
    assert (
        redactor.restore("ask <EMAIL_9> or <NAME_1> or <EMAIL_1>")
        == "ask <EMAIL_9> or <NAME_1> or jane@example.com"
    )


def test_restore_leaves_stray_angle_brackets() -> None:
    redactor, _ = _masked()
    assert (
        redactor.restore("if a < b and <b>bold</b> <EMAIL_1>") == "if a < b and <b>bold</b> jane@example.com"
    )


def _stream(redactor: Redactor, chunks: list[str]) -> tuple[list[str], str]:
    restorer = redactor.stream_restorer()
    emitted = [restorer.feed(chunk) for chunk in chunks]
    return emitted, "".join(emitted) + restorer.flush()


def test_a_stream_split_anywhere_in_a_placeholder_is_restored() -> None:
    redactor, _ = _masked()
    answer = "Write to <EMAIL_1> now"
    for cut in range(len(answer) + 1):
        _, restored = _stream(redactor, [answer[:cut], answer[cut:]])
        assert restored == "Write to jane@example.com now", cut


def test_a_stream_split_in_three_anywhere_is_restored() -> None:
    redactor, _ = _masked()
    answer = "<EMAIL_2>, <PAYMENT_CARD_1>!"
    for first in range(len(answer) + 1):
        for second in range(first, len(answer) + 1):
            chunks = [answer[:first], answer[first:second], answer[second:]]
            _, restored = _stream(redactor, chunks)
            assert restored == "bob@example.com, 4111111111111111!", (first, second)


def test_a_stream_one_character_at_a_time_is_restored() -> None:
    redactor, _ = _masked()
    answer = "Reply to <EMAIL_1>, <EMAIL_9> and <EMAIL_2> if x<y <PAYMENT_CARD_1>"
    _, restored = _stream(redactor, list(answer))
    assert restored == "Reply to jane@example.com, <EMAIL_9> and bob@example.com if x<y 4111111111111111"


def test_a_stream_emits_text_without_a_bracket_at_once() -> None:
    redactor, _ = _masked()
    restorer = redactor.stream_restorer()
    assert restorer.feed("Hello ") == "Hello "
    assert restorer.feed("world") == "world"


def test_a_stream_holds_back_only_the_start_of_a_placeholder() -> None:
    redactor, _ = _masked()
    restorer = redactor.stream_restorer()
    assert restorer.feed("Write to <EM") == "Write to "
    assert restorer.feed("AIL_") == ""
    assert restorer.feed("1> now") == "jane@example.com now"


def test_a_stream_does_not_hold_back_what_cannot_become_a_placeholder() -> None:
    redactor, _ = _masked()
    restorer = redactor.stream_restorer()
    assert restorer.feed("if a <") == "if a "
    assert restorer.feed(" b") == "< b"
    assert restorer.feed("x <div") == "x <div"


def test_a_stream_never_holds_back_more_than_the_longest_placeholder() -> None:
    redactor, _ = _masked()
    restorer = redactor.stream_restorer()
    longest = len("<PAYMENT_CARD_1>")
    fed, emitted = "", ""
    for ch in "<PAYMENT_CARD_10000 tail":
        fed += ch
        emitted += restorer.feed(ch)
        assert len(fed) - len(emitted) < longest
    assert emitted + restorer.flush() == "<PAYMENT_CARD_10000 tail"


def test_flush_returns_a_held_back_partial_placeholder_as_it_is() -> None:
    redactor, _ = _masked()
    restorer = redactor.stream_restorer()
    assert restorer.feed("cut off <EMAIL_") == "cut off "
    assert restorer.flush() == "<EMAIL_"
    assert restorer.flush() == ""


def test_a_redactor_that_masked_nothing_streams_through() -> None:
    restorer = Redactor(BuiltinDetector()).stream_restorer()
    assert restorer.feed("a <EMA") == "a <EMA"
    assert restorer.flush() == ""


# -- custom patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        r"EMP-\d{6}",
        r"\b[A-Z]{2}\d{6}\b",
        r"(?:\d{3}-){2}\d{4}",
        r"(?i)project\s+(?:apollo|gemini)",
        r"[a-z]+@corp\.example",
        r"(?:-?\d)+",
        r"ticket #\d+",
        r"(?>a+)+b",
    ],
)
def test_a_safe_custom_pattern_is_accepted(pattern: str) -> None:
    validate_custom_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a+)+$", "nested quantifiers"),
        (r"(a*)*b", "empty string"),
        (r"(\w+\s?)*$", "nested quantifiers"),
        (r"(a|aa)*b", "optional element"),
        (r"(a|a)*", "empty string"),
        (r"(ab|\wb)+c", "alternation"),
        (r"(x|\d|\w\w)+!", "alternation"),
        (r"(a?a)+b", "optional element"),
        (r"(?:a|ba?)+$", "optional element"),
        (r"(.*,)+x", "nested quantifiers"),
        (r"a*", "empty string"),
        (r"\b", "empty string"),
        (r"(?=x)", "empty string"),
        (r"(a)\1", "backreference"),
        (r"(abc", "does not compile"),
        (r"[z-a]", "does not compile"),
        ("a" * 513, "longer than 512"),
    ],
)
def test_an_unsafe_custom_pattern_is_refused_with_its_reason(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_custom_pattern(pattern)


def test_a_refusal_does_not_echo_the_pattern() -> None:
    secret = "hunter2-super-secret"
    with pytest.raises(ValueError) as refused:
        validate_custom_pattern(f"({secret}+)+")
    assert secret not in str(refused.value)
