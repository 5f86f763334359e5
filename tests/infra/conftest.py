"""Infrastructure tests synthesize offline: bundling off, so the dependency layer needs no pip."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
