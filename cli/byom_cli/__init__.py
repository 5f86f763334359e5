"""`byom`: the admin command line of BYOM Gateway, a client of its HTTP API only (SPEC §4.2)."""

__version__ = "0.1.0"
