"""Fifty pharmacies dispense the same prescription at the same moment, against a real served application
(uvicorn on a port, fifty threads with httpx, each a pharmacy's token): exactly what the prescription allows
succeeds, every other answer is a 409 OperationOutcome, and the stored record agrees (SQLite and PostgreSQL)."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx

from healthtwin.security.keys import KeySet
from healthtwin.security.tokens import TokenService

from . import rx

N = 50


@contextlib.contextmanager
def _served(store, tmp_path):
    import uvicorn

    from healthtwin.composition import AppSettings, build_app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    tokens = TokenService(KeySet.generate(), base, base + "/fhir")
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", public_url=base, rate=None), tokens=tokens)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           limit_concurrency=4 * N))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield base, tokens
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _auth(tokens, **claims) -> dict[str, str]:
    token, _ = tokens.mint(**claims)
    return {"authorization": f"Bearer {token}"}


def _race(base, headers, rid: str, quantity: float) -> list[httpx.Response]:
    barrier = threading.Barrier(N)
    answers: list[httpx.Response | None] = [None] * N

    def pharmacy(i: int) -> None:
        body = rx.dispense(rid, quantity=quantity, pharmacy=f"Organization/ph{i}")
        with httpx.Client(base_url=base, timeout=120) as c:
            barrier.wait()
            answers[i] = c.post("/fhir/MedicationDispense", json=body, headers=headers[i])

    threads = [threading.Thread(target=pharmacy, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


def test_fifty_pharmacies_at_once_one_fill_each_allowed(store, tmp_path):
    with _served(store, tmp_path) as (base, tokens):
        admin = _auth(tokens, subject="root", kind="person", scopes=["user/*.cruds"], roles=["administrator"])
        entries = [rx.patient()] + [{"resourceType": "Organization", "id": f"ph{i}", "name": f"Aptek {i}"}
                                    for i in range(N)]
        entries += [rx.prescription("once", quantity=60), rx.prescription("five", quantity=30, repeats=4)]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in entries]}
        with httpx.Client(base_url=base, timeout=60) as c:
            assert c.post("/fhir", json=bundle, headers=admin).status_code == 200
        headers = [_auth(tokens, subject=f"pharm-{i}", kind="system", client_id=f"pharm-{i}",
                         scopes=["system/*.rs", "system/MedicationDispense.c"], roles=["pharmacy"],
                         organization=f"Organization/ph{i}") for i in range(N)]
        for rid, quantity, allowed in (("once", 60, 1), ("five", 30, 5)):
            started = time.perf_counter()
            answers = _race(base, headers, rid, quantity)
            took = time.perf_counter() - started
            codes = sorted(a.status_code for a in answers)
            assert codes == [201] * allowed + [409] * (N - allowed), [a.text for a in answers if a.status_code
                                                                        not in (201, 409)][:3]
            for a in answers:
                if a.status_code == 409:
                    issue = a.json()["issue"][0]
                    assert issue["code"] == "conflict" and f"MedicationRequest/{rid}" in issue["diagnostics"]
            with httpx.Client(base_url=base, timeout=60) as c:
                mr = c.get(f"/fhir/MedicationRequest/{rid}", headers=admin).json()
                stored = c.get("/fhir/MedicationDispense", headers=admin,
                               params={"prescription": f"MedicationRequest/{rid}", "_summary": "count"}).json()
            assert stored["total"] == allowed
            assert mr["status"] == "completed" and rx.balance(mr)["fillsDispensed"] == allowed
            assert rx.balance(mr)["quantityRemaining"] == 0
            winners = {a.json()["performer"][0]["actor"]["reference"] for a in answers if a.status_code == 201}
            assert len(winners) == allowed
            print(f"{store.dialect}: {N} concurrent dispenses of '{rid}': {allowed} x 201, {N - allowed} x 409 "
                  f"in {took:.2f} s")


def test_fifty_dispenses_across_two_server_processes(store, tmp_path):
    """`healthtwin serve --workers 2`: the two processes share the database, not a lock in memory, so the race is
    decided by the database alone (the SQLite writers' lock file, PostgreSQL's advisory lock and the row)."""
    from ..conftest import serving
    args = ["--data-dir", str(tmp_path / "data"), "--insecure-open", "--workers", "2", "--rate-limit", "off"]
    if store.dialect == "postgres":
        args += ["--database", store.dsn]
    with serving(tmp_path, *args) as (_, port):
        base = f"http://127.0.0.1:{port}"
        entries = [rx.patient(), rx.prescription("once", quantity=60)]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in entries]}
        with httpx.Client(base_url=base, timeout=60) as c:
            assert c.post("/fhir", json=bundle).status_code == 200
        barrier = threading.Barrier(N)
        codes: list[int] = []

        def pharmacy() -> None:
            with httpx.Client(base_url=base, timeout=120) as c:
                barrier.wait()
                codes.append(c.post("/fhir/MedicationDispense", json=rx.dispense("once")).status_code)

        threads = [threading.Thread(target=pharmacy) for _ in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert sorted(codes) == [201] + [409] * (N - 1), sorted(codes)
        with httpx.Client(base_url=base, timeout=60) as c:
            stored = c.get("/fhir/MedicationDispense", params={"_summary": "count"}).json()["total"]
            assert stored == 1 and c.get("/fhir/MedicationRequest/once").json()["status"] == "completed"
