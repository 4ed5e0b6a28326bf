"""Fixtures for the registry tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def world_app(store, tmp_path):
    """The real application with the secure policy over the role-play world (tests/security/world.py), loaded:
    (test client, world, store)."""
    from ..security import world as W
    client, world = W.build(store, tmp_path)
    with client as c:
        W.load(c, world)
        yield c, world, store
