"""What the registries add to the HTTP application (api/plugins.py): one contribution per registry."""
from __future__ import annotations

from typing import Any

from ..api.plugins import Contribution


def contributions(services: Any) -> list[Contribution]:
    found: list[Contribution] = []
    return found
