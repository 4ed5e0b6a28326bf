"""The id_token checks of the external sign-in (security/oidc_provider.py): every check refuses the token it
is there for, with a reason the sign-in page words (signature, expired, nonce...). The tokens are signed here
with RSA and EC keys whose public halves are the provider's JWKS, as a provider signs them."""
from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from healthtwin.security.oidc_provider import Provider
from healthtwin.security.tokens import TokenError

ISSUER, CLIENT, NONCE = "https://eid.example", "pages", "n-0123456789"


def _jwk(key, kid):
    algo = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    jwk = algo.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid}


@pytest.fixture(scope="module")
def keys():
    return {"rsa": rsa.generate_private_key(65537, 2048), "ec": ec.generate_private_key(ec.SECP256R1()),
            "other": ec.generate_private_key(ec.SECP256R1())}


@pytest.fixture
def provider(keys):
    p = Provider(ISSUER, CLIENT)
    p._jwks = {"keys": [_jwk(keys["rsa"], "r1"), _jwk(keys["ec"], "e1")]}
    return p


def _token(keys, alg="ES256", kid="e1", key="ec", **changes):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "citizen-1", "iat": now, "exp": now + 300, "nonce": NONCE,
              "fin": "AB12CD3"}
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, keys[key], algorithm=alg, headers={"kid": kid})


def test_a_good_token_by_either_algorithm(keys, provider):
    assert provider.verify_id_token(_token(keys), NONCE)["fin"] == "AB12CD3"
    assert provider.verify_id_token(_token(keys, "RS256", "r1", "rsa"), NONCE)["sub"] == "citizen-1"
    assert provider.verify_id_token(_token(keys, aud=[CLIENT, "other"], azp=CLIENT), NONCE)


@pytest.mark.parametrize("change, reason", [
    ({"nonce": "n-another-sign-in"}, "wrong nonce"),
    ({"nonce": None}, "wrong nonce"),
    ({"exp": int(time.time()) - 120}, "token expired"),
    ({"iat": int(time.time()) - 3600, "exp": int(time.time()) + 60}, "token expired"),
    ({"aud": "another-client"}, "wrong audience"),
    ({"aud": [CLIENT, "other"]}, "azp is not this client"),
    ({"iss": "https://another.example"}, "wrong issuer"),
    ({"sub": None}, "missing claim sub"),
    ({"exp": None}, "missing claim exp"),
])
def test_each_claim_check_refuses(keys, provider, change, reason):
    with pytest.raises(TokenError, match=reason):
        provider.verify_id_token(_token(keys, **change), NONCE)


def test_signatures_and_keys(keys, provider):
    with pytest.raises(TokenError, match="bad signature"):  # signed by a key the provider does not publish
        provider.verify_id_token(_token(keys, key="other"), NONCE)
    with pytest.raises(TokenError, match="unknown kid"):
        provider.verify_id_token(_token(keys, kid="nobody"), NONCE)
    with pytest.raises(TokenError, match="cannot verify"):  # an EC signature claimed against the RSA key
        provider.verify_id_token(_token(keys, kid="r1"), NONCE)
    with pytest.raises(TokenError, match="not accepted"):
        provider.verify_id_token(jwt.encode({"iss": ISSUER}, "secret", algorithm="HS256", headers={"kid": "e1"}), NONCE)
    unsigned = jwt.encode({"iss": ISSUER, "aud": CLIENT, "sub": "x", "nonce": NONCE}, None, algorithm="none",
                          headers={"kid": "e1"})
    with pytest.raises(TokenError, match="not accepted"):
        provider.verify_id_token(unsigned, NONCE)
    tampered = _token(keys).split(".")
    tampered[1] = jwt.utils.base64url_encode(b'{"iss":"https://eid.example","aud":"pages","sub":"someone-else",'
                                             b'"iat":%d,"exp":%d,"nonce":"%s"}' % (time.time(), time.time() + 300,
                                                                                   NONCE.encode())).decode()
    with pytest.raises(TokenError, match="bad signature"):
        provider.verify_id_token(".".join(tampered), NONCE)
