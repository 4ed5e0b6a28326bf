"""What the twin adds to the HTTP application (api/plugins.py): one contribution per part."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..api.plugins import Contribution


def contributions(services: Any, analytics_dir: Path | None = None) -> list[Contribution]:
    found: list[Contribution] = []
    return found
