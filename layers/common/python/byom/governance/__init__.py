"""Governance (SPEC §7, §8): redaction policy, the audit trail, data-subject rights, isolation."""
