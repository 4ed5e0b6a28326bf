"""Access-token verification, attacked: every refusal here is a real-world JWT attack."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from healthtwin.request import Caller
from healthtwin.fhir.outcome import FHIRError
from healthtwin.security.keys import KeySet, public_jwk
from healthtwin.security.tokens import ExternalIssuer, JWKSFetcher, TokenCaller, TokenError, TokenService

from .conftest import BASE, FHIR, hand_made_jwt


def claims(**over):
    now = int(time.time())
    c = {"iss": BASE, "aud": FHIR, "sub": "alice", "iat": now, "nbf": now, "exp": now + 300,
         "jti": uuid.uuid4().hex, "scope": "patient/*.rs", "kind": "person", "roles": ["citizen"]}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def signed(keys: KeySet, c: dict, alg: str = "ES256", key=None, kid=None, typ="at+jwt") -> str:
    return jwt.encode(c, key or keys.signing_key, algorithm=alg, headers={"kid": kid or keys.kid, "typ": typ})


def test_mint_and_verify_round_trip(tokens):
    token, life = tokens.mint("alice", "person", ["patient/*.rs", "openid"], roles=["citizen"], client_id="app",
                              patient="Patient/123", fhir_user="Patient/123")
    assert life == 3600
    caller = tokens.caller(token)
    assert isinstance(caller, TokenCaller)
    assert caller.subject == "alice" and caller.kind == "person" and caller.patient == "Patient/123"
    assert caller.scopes == {"patient/*.rs", "openid"} and caller.roles == {"citizen"}
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": tokens.keys.kid, "typ": "at+jwt"}
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["exp"] - body["iat"] <= 3600 and body["aud"] == FHIR and body["iss"] == BASE


def test_lifetime_is_capped_at_one_hour(keys):
    with pytest.raises(ValueError):
        TokenService(keys, BASE, FHIR, lifetime=7200)
    token, life = TokenService(keys, BASE, FHIR, lifetime=600).mint("a", "person", [], lifetime=99999)
    assert life == 600


def test_forged_signature_refused(tokens):
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(signed(tokens.keys, claims(), key=other))


def test_tampered_payload_refused(tokens):
    token, _ = tokens.mint("alice", "person", ["patient/*.rs"])
    header, payload, sig = token.split(".")
    evil = signed(tokens.keys, claims(scope="system/*.cruds")).split(".")[1]
    with pytest.raises(TokenError):
        tokens.verify(f"{header}.{evil}.{sig}")


def test_expired_refused_beyond_small_leeway(tokens):
    now = int(time.time())
    tokens.verify(signed(tokens.keys, claims(exp=now - 10)))  # clock skew is tolerated...
    with pytest.raises(TokenError, match="expired"):  # ...but not more
        tokens.verify(signed(tokens.keys, claims(exp=now - 120)))


def test_not_yet_valid_refused(tokens):
    with pytest.raises(TokenError, match="not yet valid"):
        tokens.verify(signed(tokens.keys, claims(nbf=int(time.time()) + 600)))


def test_wrong_audience_refused(tokens):
    with pytest.raises(TokenError, match="audience"):
        tokens.verify(signed(tokens.keys, claims(aud="https://other.example/fhir")))
    with pytest.raises(TokenError, match="audience"):
        tokens.verify(signed(tokens.keys, claims(aud=BASE + "/auth/token")))


def test_wrong_issuer_refused(tokens):
    with pytest.raises(TokenError, match="issuer"):
        tokens.verify(signed(tokens.keys, claims(iss="https://evil.example")))
    with pytest.raises(TokenError):
        tokens.verify(signed(tokens.keys, claims(iss=None)))


@pytest.mark.parametrize("missing", ["exp", "sub", "jti", "iat", "aud"])
def test_required_claims(tokens, missing):
    with pytest.raises(TokenError):
        tokens.verify(signed(tokens.keys, claims(**{missing: None})))


def test_alg_none_refused(tokens):
    for alg in ("none", "None", "NONE"):
        token = hand_made_jwt({"alg": alg, "kid": tokens.keys.kid, "typ": "at+jwt"}, claims())
        with pytest.raises(TokenError, match="algorithm"):
            tokens.verify(token)


def test_hs256_keyed_with_our_public_key_refused(tokens):
    """Algorithm confusion: the attacker knows our public key (it is published) and uses it as an HMAC secret."""
    pub = tokens.keys.signing_key.public_key()
    secrets = [pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
               jwt.algorithms.ECAlgorithm.to_jwk(pub).encode()]
    for secret in secrets:
        for alg in ("HS256", "HS384", "HS512"):
            token = hand_made_jwt({"alg": alg, "kid": tokens.keys.kid, "typ": "at+jwt"}, claims(), secret)
            with pytest.raises(TokenError, match="algorithm"):
                tokens.verify(token)


def test_alg_must_fit_key(tokens):
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(TokenError):
        tokens.verify(signed(tokens.keys, claims(), alg="ES384", key=p384))


def test_unknown_kid_refused(tokens):
    with pytest.raises(TokenError, match="kid"):
        tokens.verify(signed(tokens.keys, claims(), kid="someone-elses-key"))


def test_embedded_keys_in_header_refused(tokens):
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims(), attacker, algorithm="ES256",
                       headers={"kid": tokens.keys.kid, "typ": "at+jwt", "jwk": public_jwk(attacker.public_key())})
    with pytest.raises(TokenError, match="jku/jwk"):
        tokens.verify(token)


def test_id_token_is_not_an_access_token(tokens):
    id_token = tokens.mint_id_token("alice", FHIR, None, None)  # even with aud set to the FHIR base
    with pytest.raises(TokenError, match="at\\+jwt"):
        tokens.verify(id_token)


def test_garbage_refused(tokens):
    for junk in ("", "abc", "a.b.c", "x" * 20000, "..", "e30.e30.", 12):
        with pytest.raises(TokenError):
            tokens.verify(junk)


# -- external OpenID Connect issuer -------------------------------------------------------------------------
IDP = "https://idp.example/realms/ht"


@pytest.fixture(scope="module")
def idp_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def with_idp(keys, idp_key):
    jwks = {"keys": [public_jwk(idp_key.public_key())]}
    ext = ExternalIssuer(IDP, jwks, audience="healthtwin")
    return TokenService(keys, BASE, FHIR, externals=[ext]), public_jwk(idp_key.public_key())["kid"]


def idp_token(key, kid, **over):
    now = int(time.time())
    c = {"iss": IDP, "aud": "healthtwin", "sub": "f:1234", "exp": now + 300, "iat": now, "azp": "portal",
         "realm_access": {"roles": ["practitioner", "offline_access"]}, "fhirUser": IDP + "/Practitioner/9",
         "scope": "openid user/*.rs"}
    c.update(over)
    return jwt.encode(c, key, algorithm="RS256", headers={"kid": kid})


def test_external_issuer_claims_mapped(with_idp, idp_key):
    service, kid = with_idp
    caller = service.caller(idp_token(idp_key, kid))
    assert caller.subject == "f:1234" and caller.issuer == IDP and caller.kind == "person"
    assert caller.roles == {"practitioner", "offline_access"} and caller.fhir_user == "Practitioner/9"
    assert caller.scopes == {"openid", "user/*.rs"} and caller.client_id == "portal"
    patient = service.caller(idp_token(idp_key, kid, patient="123", fhirUser=None, realm_access=None,
                                       roles=["citizen"]))
    assert patient.patient == "Patient/123" and patient.roles == {"citizen"}


def test_external_role_map_only_keeps_mapped_roles(keys, idp_key):
    kid = public_jwk(idp_key.public_key())["kid"]
    ext = ExternalIssuer(IDP, {"keys": [public_jwk(idp_key.public_key())]}, audience="healthtwin",
                         role_map={"practitioner": "clinician"})
    caller = TokenService(keys, BASE, FHIR, externals=[ext]).caller(idp_token(idp_key, kid))
    assert caller.roles == {"clinician"}


def test_external_issuer_attacks(with_idp, idp_key, keys):
    service, kid = with_idp
    with pytest.raises(TokenError, match="audience"):
        service.verify(idp_token(idp_key, kid, aud="another-app"))
    with pytest.raises(TokenError, match="signature"):  # the right kid, someone else's key
        service.verify(idp_token(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid))
    with pytest.raises(TokenError, match="kid"):  # the IdP's iss, signed with OUR key: not the IdP's keys
        service.verify(jwt.encode({"iss": IDP, "aud": "healthtwin", "sub": "x", "exp": int(time.time()) + 60},
                                  keys.signing_key, algorithm="ES256", headers={"kid": keys.kid}))
    with pytest.raises(TokenError, match="expired"):
        service.verify(idp_token(idp_key, kid, exp=int(time.time()) - 3600))
    pem = idp_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(TokenError, match="algorithm"):
        service.verify(hand_made_jwt({"alg": "HS256", "kid": kid}, {"iss": IDP, "aud": "healthtwin", "sub": "x",
                                                                      "exp": int(time.time()) + 60}, pem))


def test_jwks_fetcher_refreshes_on_unknown_kid_without_blocking(idp_key):
    with pytest.raises(ValueError):
        JWKSFetcher("http://idp.example/jwks")
    docs = [{"keys": []}, {"keys": [public_jwk(idp_key.public_key())]}]
    calls = []

    def fetch(url, timeout):
        calls.append(url)
        import orjson
        return orjson.dumps(docs[min(len(calls) - 1, 1)])

    fetcher = JWKSFetcher("https://idp.example/jwks", min_interval=0, fetch=fetch)
    fetcher.prime()
    ext = ExternalIssuer(IDP, fetcher)
    kid = public_jwk(idp_key.public_key())["kid"]
    assert ext.key(kid) is None  # unknown now: refused, refresh started in the background
    for _ in range(100):
        if ext.key(kid) is not None:
            break
        time.sleep(0.01)
    assert ext.key(kid) is not None and len(calls) >= 2


# -- the identify() seam -------------------------------------------------------------------------------------
class FakeRequest:
    def __init__(self, headers):
        self.headers = {k.lower(): v for k, v in headers.items()}


def test_identify(tokens):
    assert tokens.identify(FakeRequest({})) == Caller()
    token, _ = tokens.mint("svc", "system", ["system/*.rs"], client_id="svc")
    caller = tokens.identify(FakeRequest({"Authorization": f"Bearer {token}"}))
    assert caller.kind == "system" and caller.subject == "svc"
    for bad in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer x.y.z", f"Token {token}"):
        with pytest.raises(FHIRError) as info:
            tokens.identify(FakeRequest({"Authorization": bad}))
        assert info.value.status == 401 and "Bearer" in info.value.headers["www-authenticate"]


def test_external_iua_role_and_organization_are_read_through_the_map(keys, idp_key):
    """IHE IUA's subject_role (a Coding) becomes one of our roles only through the role map; its
    subject_organization_id is the caller's organization when it is an Organization reference."""
    kid = public_jwk(idp_key.public_key())["kid"]
    snomed = "http://snomed.info/sct"
    ext = ExternalIssuer(IDP, {"keys": [public_jwk(idp_key.public_key())]}, audience="healthtwin",
                         role_map={f"{snomed}|158965000": "clinician", "auditor-code": "auditor"})
    service = TokenService(keys, BASE, FHIR, externals=[ext])
    iua = {"subject_role": {"system": snomed, "code": "158965000"},
           "subject_organization_id": "https://health.gov.az/fhir/Organization/org-7"}
    caller = service.caller(idp_token(idp_key, kid, realm_access=None, extensions={"ihe_iua": iua}))
    assert caller.roles == {"clinician"} and caller.organization == "Organization/org-7"
    other = service.caller(idp_token(idp_key, kid, realm_access=None, extensions={"ihe_iua": {
        "subject_role": [{"system": "urn:other", "code": "auditor-code"}, {"system": snomed, "code": "1"}],
        "subject_organization_id": "urn:oid:1.2.3"}}))
    assert other.roles == {"auditor"} and other.organization is None
    unmapped = TokenService(keys, BASE, FHIR, externals=[ExternalIssuer(
        IDP, {"keys": [public_jwk(idp_key.public_key())]}, audience="healthtwin")])
    raw = unmapped.caller(idp_token(idp_key, kid, realm_access=None, extensions={"ihe_iua": iua}))
    assert raw.roles == set()  # a coded role is never taken over as a role name


# -- lifetime: whoever signs a token, it may not be meant to live longer than this server allows ----------------
def test_our_signed_token_with_a_long_lifetime_is_refused(tokens):
    now = int(time.time())
    with pytest.raises(TokenError, match="lifetime"):  # signed with our key (a minting bug, a stolen key...)
        tokens.verify(signed(tokens.keys, claims(iat=now, exp=now + 30 * 86400)))
    with pytest.raises(TokenError, match="lifetime"):  # backdated iat does not help
        tokens.verify(signed(tokens.keys, claims(iat=now - 86400, nbf=now - 86400, exp=now + 60)))
    assert tokens.verify(signed(tokens.keys, claims(iat=now, exp=now + 3600)))[0]["sub"] == "alice"


def test_external_tokens_with_a_long_lifetime_are_refused(with_idp, idp_key):
    service, kid = with_idp
    now = int(time.time())
    with pytest.raises(TokenError, match="lifetime"):
        service.verify(idp_token(idp_key, kid, iat=now, exp=now + 86400))
    without_iat = jwt.encode({"iss": IDP, "aud": "healthtwin", "sub": "x", "exp": now + 86400}, idp_key,
                             algorithm="RS256", headers={"kid": kid})
    with pytest.raises(TokenError, match="lifetime"):  # no iat: the time left must fit the maximum
        service.verify(without_iat)
    with pytest.raises(TokenError):
        service.verify(idp_token(idp_key, kid, iat="yesterday"))
    assert service.verify(idp_token(idp_key, kid, iat=now, exp=now + 3600))[0]["sub"] == "f:1234"


def test_the_maximum_is_the_servers_setting(keys, idp_key):
    kid = public_jwk(idp_key.public_key())["kid"]
    ext = ExternalIssuer(IDP, {"keys": [public_jwk(idp_key.public_key())]}, audience="healthtwin")
    strict = TokenService(keys, BASE, FHIR, lifetime=300, max_lifetime=600, externals=[ext])
    now = int(time.time())
    with pytest.raises(TokenError, match="maximum of 600 s"):
        strict.verify(idp_token(idp_key, kid, iat=now, exp=now + 1800))
    with pytest.raises(ValueError):
        TokenService(keys, BASE, FHIR, lifetime=900, max_lifetime=600)
