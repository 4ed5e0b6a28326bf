"""Every path that lets a stored row out goes through api/guard.release, which applies the policy's filter,
masking and labels; responses accept nothing else (SQLite and PostgreSQL for the paths, pure checks for the
structure)."""
from __future__ import annotations

import ast
import time
from pathlib import Path

import orjson
import pytest

from healthtwin.api import guard
from healthtwin.store.records import Stored

from . import world as W

SRC = Path(__file__).resolve().parents[2] / "src" / "healthtwin"
ASYNC = {"prefer": "respond-async"}


def _patients(node) -> list[dict]:
    """Every Patient resource anywhere in an answer (Bundles nested in batch responses included)."""
    out = []
    if isinstance(node, dict):
        if node.get("resourceType") == "Patient":
            out.append(node)
        for v in node.values():
            out += _patients(v)
    elif isinstance(node, list):
        for v in node:
            out += _patients(v)
    return out


def _masked(patient: dict) -> bool:
    return ("telecom" not in patient and "address" not in patient
            and any(s.get("code") == "MASKED" for s in (patient.get("meta") or {}).get("security") or []))


def _export(c, headers) -> list[dict]:
    r = c.get("/fhir/Patient/$export", params={"_type": "Patient"}, headers={**headers, **ASYNC})
    assert r.status_code == 202, r.text
    deadline = time.time() + 20
    while time.time() < deadline:
        m = c.get(r.headers["content-location"], headers=headers)
        if m.status_code == 200:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the export did not finish")
    lines = []
    for o in m.json()["output"]:
        lines += [orjson.loads(x) for x in c.get(o["url"], headers=headers).content.splitlines() if x]
    return lines


def test_the_insurer_gets_the_masked_patient_on_every_path(app):
    c, world, _ = app
    h = world.headers["insurer"]
    bundle = lambda btype: {"resourceType": "Bundle", "type": btype, "entry": [  # noqa: E731
        {"request": {"method": "GET", "url": "Patient/p1"}},
        {"request": {"method": "GET", "url": "Coverage?_include=Coverage:beneficiary"}}]}
    answers = {
        "read": c.get("/fhir/Patient/p1", headers=h),
        "vread": c.get("/fhir/Patient/p1/_history/1", headers=h),
        "history": c.get("/fhir/Patient/p1/_history", headers=h),
        "search": c.get("/fhir/Patient?_id=p1", headers=h),
        "include": c.get("/fhir/Coverage?_include=Coverage:beneficiary", headers=h),
        "$everything": c.get("/fhir/Patient/p1/$everything", headers=h),
        "batch": c.post("/fhir", json=bundle("batch"), headers=h),
        "transaction": c.post("/fhir", json=bundle("transaction"), headers=h),
    }
    for path, r in answers.items():
        assert r.status_code == 200, (path, r.text)
        found = _patients(r.json())
        assert found, path
        assert all(_masked(p) for p in found), (path, found)
        assert "+994501234567" not in r.text and "Bakı" not in r.text, path
    exported = _export(c, h)
    assert exported and all(_masked(p) for p in exported)
    # the administrator still gets the whole Patient on the same path
    full = c.get("/fhir/Patient/p1/$everything", headers=world.headers["administrator"])
    assert any("telecom" in p for p in _patients(full.json()))


def _row() -> Stored:
    return Stored("Patient", "p1", 1, 0.0, False, b'{"resourceType":"Patient","id":"p1"}')


def test_responses_refuse_rows_that_were_not_released():
    from healthtwin.api.interactions.bundles import history_bundle, searchset
    from healthtwin.api.interactions.read import respond
    from healthtwin.request import Caller, RequestContext
    from healthtwin.api.responses import fhir
    ctx = RequestContext(Caller(), "http://x")
    with pytest.raises(TypeError):
        searchset("http://x", [_row()], [], 1, [], None, None)
    with pytest.raises(TypeError):
        searchset("http://x", [], [_row()], 0, [], None, None)
    with pytest.raises(TypeError):
        history_bundle("http://x", [_row()], 1, [])
    with pytest.raises(TypeError):
        respond(ctx, "Patient", "p1", _row(), None, None)
    with pytest.raises(TypeError):
        fhir(200, _row().content, ctx)  # raw stored bytes are not a body
    with pytest.raises(TypeError):
        guard.Released(_row(), object())  # only release() makes one


def test_release_is_the_only_maker_of_released_rows():
    """No module but api/guard.py touches the key that makes a Released, or the policy's row filter: a new
    path can only let rows out by calling guard.release."""
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel == "api/guard.py":
            continue
        tree = ast.parse(path.read_text(), rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "_KEY" or \
                    isinstance(node, ast.Attribute) and node.attr in ("_KEY", "readable") and rel != "security/policy.py":
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
