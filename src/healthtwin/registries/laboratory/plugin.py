"""What the laboratory adds to the HTTP application: its write rules. Its worklists are plain searches
(docs/registries.md, "Laboratory"), so it adds no operation."""
from __future__ import annotations

from typing import Any

from ...api.plugins import Contribution
from .rules import RULES


def contribution(services: Any) -> Contribution:
    return Contribution("laboratory", write_rules=list(RULES))
