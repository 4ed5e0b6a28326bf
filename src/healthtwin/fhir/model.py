"""Facts about R4 resources the server needs everywhere: the resource types, id syntax, meta handling."""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources as pkg_resources
from typing import Any

import orjson

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@lru_cache(maxsize=None)
def definition(name: str) -> Any:
    """A generated definitions file (src/healthtwin/fhir/definitions/<name>.json), parsed once."""
    return orjson.loads(pkg_resources.files("healthtwin.fhir").joinpath("definitions", f"{name}.json").read_bytes())


# Types this server refuses to store, and why: storing them would promise behaviour nothing carries out.
# A Subscription is a request to be notified; no part of the server delivers notifications.
NOT_STORED: dict[str, str] = {
    "Subscription": "Subscriptions are not supported: this server delivers no notifications, so a Subscription "
                    "would never be acted on. Poll with a search on _lastUpdated instead.",
}


@lru_cache(maxsize=1)
def resource_types() -> frozenset[str]:
    return frozenset(definition("resource_types"))


def is_resource_type(name: str) -> bool:
    return name in resource_types()


def summary_elements(resource_type: str) -> frozenset[str]:
    return frozenset(definition("summary_elements")["summary"].get(resource_type, ()))


def mandatory_elements(resource_type: str) -> frozenset[str]:
    return frozenset(definition("summary_elements")["mandatory"].get(resource_type, ()))
