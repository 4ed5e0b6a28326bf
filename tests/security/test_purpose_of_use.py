"""X-Purpose-Of-Use: a caller states why it accesses a record; only its role's purposes are accepted, and the
citizen sees the stated purpose in their access log; a token issued for a purpose (IHE IUA) states it on every
request (SQLite and PostgreSQL)."""
from __future__ import annotations


def purposes_seen(c, world, patient="p1"):
    log = c.get(f"/fhir/Patient/{patient}/$access-log", headers=world.headers["citizen"]).json()
    return [[coding["code"] for p in e["resource"].get("purposeOfEvent", []) for coding in p["coding"]]
            for e in log["entry"]]


def test_a_declared_purpose_is_checked_and_recorded(app):
    c, world, _ = app
    me = world.headers["citizen"]
    assert c.get("/fhir/Patient/p1", headers={**me, "X-Purpose-Of-Use": "PATRQT"}).status_code == 200
    assert ["PATRQT"] in purposes_seen(c, world)
    # a citizen cannot claim to be doing research, nor an analyst to be treating
    refused = c.get("/fhir/Patient/p1", headers={**me, "X-Purpose-Of-Use": "HRESCH"})
    assert refused.status_code == 403 and "HRESCH" in refused.text and "PATRQT" in refused.text
    analyst = c.get("/fhir/Observation", headers={**world.headers["analyst"], "X-Purpose-Of-Use": "TREAT"})
    assert analyst.status_code == 403
    insurer = c.get("/fhir/Coverage", headers={**world.headers["insurer"], "X-Purpose-Of-Use": "HPAYMT"})
    assert insurer.status_code == 200
    # emergency treatment comes only with break-the-glass, never by saying so
    doc = {**world.headers["clinician"], "X-Purpose-Of-Use": "ETREAT"}
    assert c.get("/fhir/Patient/p1", headers=doc).status_code == 403


def test_a_malformed_purpose_is_a_clear_400(app):
    c, world, _ = app
    for bad in ("treat", "TREAT,HPAYMT", "", "X" * 20):
        r = c.get("/fhir/Patient/p1", headers={**world.headers["citizen"], "X-Purpose-Of-Use": bad})
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", bad


def test_refusals_for_a_purpose_are_audited(app):
    c, world, store = app
    from healthtwin.security.audit import decode_event
    before = store.query("SELECT count(*) FROM audit_log", [])[0][0]
    assert c.get("/fhir/Patient/p1", headers={**world.headers["citizen"],
                                             "X-Purpose-Of-Use": "HRESCH"}).status_code == 403
    rows = store.query("SELECT event FROM audit_log WHERE seq > ? ORDER BY seq", [before])
    events = [decode_event(bytes(r[0])) for r in rows]
    assert events and events[-1]["outcome"] == "4"


# -- a purpose carried by the token (IHE IUA) -------------------------------------------------------------------
def _token(world, role, purpose_claims):
    """A token of `role` (the world's claims) with extra raw claims, signed with the server's key."""
    import jwt

    from healthtwin.security.keys import SIGNING_ALG
    from healthtwin.security.tokens import unverified_claims

    from .world import ROLE_TOKENS
    base = unverified_claims(world.mint(role, **ROLE_TOKENS[role])["authorization"].split()[1])
    token = jwt.encode({**base, **purpose_claims}, world.keys.signing_key, algorithm=SIGNING_ALG,
                       headers={"kid": world.keys.kid, "typ": "at+jwt"})
    return {"authorization": f"Bearer {token}"}


def test_a_token_issued_for_a_purpose_states_it_on_every_request(app):
    c, world, _ = app
    iua = {"extensions": {"ihe_iua": {"purpose_of_use": {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "FAMRQT"}}}}
    me = _token(world, "citizen", iua)
    assert c.get("/fhir/Patient/p1", headers=me).status_code == 200
    assert purposes_seen(c, world)[-1] == ["FAMRQT"]
    assert c.get("/fhir/Patient/p1", headers={**me, "X-Purpose-Of-Use": "FAMRQT"}).status_code == 200
    other = c.get("/fhir/Patient/p1", headers={**me, "X-Purpose-Of-Use": "PATRQT"})
    assert other.status_code == 403 and "FAMRQT" in other.text
    # the plain claim some providers write instead
    assert c.get("/fhir/Patient/p1", headers=_token(world, "citizen", {"purpose_of_use": "PATRQT"})).status_code == 200
    assert purposes_seen(c, world)[-1] == ["PATRQT"]


def test_a_token_purpose_outside_the_role_or_unreadable_opens_nothing(app):
    c, world, _ = app
    research = _token(world, "citizen", {"purpose_of_use": {"code": "HRESCH"}})
    assert c.get("/fhir/Patient/p1", headers=research).status_code == 403
    for bad in ({"purpose_of_use": "treat"}, {"purpose_of_use": ["TREAT", "HPAYMT"]},
                {"extensions": {"ihe_iua": {"purpose_of_use": {"system": "x"}}}}, {"purpose_of_use": 7}):
        r = c.get("/fhir/Patient/p1", headers=_token(world, "clinician", bad))
        assert r.status_code == 401 and "purpose_of_use" in r.text, bad


def test_backend_services_ask_for_a_purpose_at_the_token_endpoint(app, client_keys):
    from healthtwin.security.clients import add_client
    from healthtwin.security.keys import public_jwk

    from .conftest import BackendClient
    c, world, store = app
    jwks = {"keys": [public_jwk(k.public_key()) for k, _ in client_keys.values()]}
    insurer = BackendClient(add_client(store, "Insurer", jwks=jwks, scopes="system/Coverage.rs",
                                       organization="Organization/org-ins", roles="insurer"), client_keys)
    got = c.post("/auth/token", data=insurer.form(scope="system/Coverage.rs", purpose_of_use="HPAYMT"))
    assert got.status_code == 200 and got.json()["purpose_of_use"] == "HPAYMT", got.text
    assert world.tokens.caller(got.json()["access_token"]).purpose == "HPAYMT"
    headers = {"authorization": f"Bearer {got.json()['access_token']}"}
    assert c.get("/fhir/Coverage/c1", headers=headers).status_code == 200
    assert c.get("/fhir/Coverage/c1", headers={**headers, "X-Purpose-Of-Use": "COVAUTH"}).status_code == 403
    for bad in ("TREAT", "hpaymt"):  # not an insurer's purpose; not a code
        r = c.post("/auth/token", data=insurer.form(scope="system/Coverage.rs", purpose_of_use=bad))
        assert r.status_code == 400 and r.json()["error"] == "invalid_request", bad


def test_the_token_command_mints_a_purpose(tmp_path):
    from healthtwin.security.commands import mint
    from healthtwin.security.keys import load_or_create
    from healthtwin.security.tokens import TokenService
    token = mint(tmp_path, "http://twin.example", "ops", "person", ["user/*.rs"], ["administrator"],
                 purpose="HSYSADMIN")
    service = TokenService(load_or_create(tmp_path), "http://twin.example", "http://twin.example/fhir")
    assert service.caller(token).purpose == "HSYSADMIN"
