"""docs/operations.md lists every operation the server registers, and nothing it does not."""
from __future__ import annotations

import re

from healthtwin.api.operations.registry import all_operations

from ..conftest import PROJECT_ROOT


def test_the_operations_page_matches_the_registry(tmp_path):
    # What the composed application registers: api/'s own operations and every package's contribution
    from healthtwin.composition import AppSettings, build_app
    from healthtwin.request import OpenPolicy
    from healthtwin.store.sqlite import SQLiteStore
    build_app(SQLiteStore(str(tmp_path / "ops.sqlite")), AppSettings(rate=None, audit=False), policy=OpenPolicy())
    table = (PROJECT_ROOT / "docs" / "operations.md").read_text().split("\n## ")[0]
    documented = set(re.findall(r"^\| `\$([a-z-]+)`|, `\$([a-z-]+)`| \(`\$([a-z-]+)`\)", table, re.M))
    documented = {name for names in documented for name in names if name}
    registered = {op.name for op in all_operations()}
    assert documented == registered
