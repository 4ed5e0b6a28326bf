"""Synthetic Observations for tests and benchmarks (deterministic, no external data)."""
from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

_CODES = [("8867-4", "Heart rate", "/min"), ("8310-5", "Body temperature", "Cel"),
          ("29463-7", "Body weight", "kg"), ("8302-2", "Body height", "cm"), ("2339-0", "Glucose", "mg/dL")]


def observations(n: int, seed: int = 7, patients: int = 10000) -> Iterator[dict[str, Any]]:
    """``n`` vital-sign Observations: code.coding (1-2 codings), subject, effectiveDateTime, valueQuantity."""
    rng = random.Random(seed)
    for i in range(n):
        code, display, unit = _CODES[rng.randrange(len(_CODES))]
        coding = [{"system": "http://loinc.org", "code": code, "display": display}]
        if rng.random() < 0.3:  # some carry a second, local coding: exercises forEach fan-out
            coding.append({"system": "urn:healthtwin:local", "code": f"L{code}"})
        yield {
            "resourceType": "Observation",
            "id": f"obs-{i}",
            "status": "final",
            "code": {"coding": coding},
            "subject": {"reference": f"Patient/p{rng.randrange(patients)}"},
            "effectiveDateTime": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T08:00:00Z",
            "valueQuantity": {"value": round(rng.uniform(1, 200), 1), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit},
        }


def write_ndjson(path: Path, n: int, seed: int = 7) -> Path:
    """Write ``n`` synthetic Observations as NDJSON (streamed, constant memory)."""
    with open(path, "wb") as fh:
        for obs in observations(n, seed):
            fh.write(orjson.dumps(obs))
            fh.write(b"\n")
    return path


OBSERVATION_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "observation_codes",
    "status": "active",
    "resource": "Observation",
    "select": [
        {"column": [
            {"name": "id", "path": "getResourceKey()", "type": "id"},
            {"name": "patient", "path": "subject.getReferenceKey(Patient)", "type": "string"},
            {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
        ]},
        {"forEach": "code.coding", "column": [{"name": "code", "path": "code", "type": "code"}]},
    ],
}
