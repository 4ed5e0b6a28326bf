"""Synthetic population of Azerbaijan as FHIR R4 Bulk Data NDJSON (see docs/population.md)."""
from __future__ import annotations

from .events import ALL_EVENTS
from .generator import generate, generate_stream, write_ndjson_stream

__all__ = ["ALL_EVENTS", "generate", "generate_stream", "write_ndjson_stream"]
