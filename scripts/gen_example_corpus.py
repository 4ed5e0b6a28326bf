"""Write the specification's example resources into tests/data/r4-examples.ndjson.gz (CC0, from the HL7 R4
package), so tests use them without downloading anything at run time.

Run: .venv/bin/python scripts/gen_example_corpus.py
"""
from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from fhir_package import examples

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "r4-examples.ndjson.gz"


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with gzip.open(OUT, "wb", compresslevel=9) as fp:
        for path in examples():
            resource = orjson.loads(path.read_bytes())
            if not isinstance(resource, dict) or "resourceType" not in resource:
                continue
            if path.stat().st_size > 1_000_000:
                continue  # the package's definition bundles (Bundle-resources, -valuesets…), not examples
            fp.write(orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    print(f"{count} example resources → {OUT.relative_to(OUT.parent.parent.parent)} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
