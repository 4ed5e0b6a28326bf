"""The server's own secrets, generated on first start into `<data_dir>/keys/` and never overwritten.

    signing.pem     ES256 (P-256) private key that signs access and id tokens; its `kid` is the RFC 7638
                    thumbprint of the public key, so it needs no separate file and cannot drift.
    signing.pub.<n> public keys of signing keys retired by `healthtwin keys rotate-signing`: they still verify
                    (and are published in the JWKS) until `healthtwin keys retire-signing` deletes them, once
                    every token they signed has expired. The private key is not kept: a retired key never
                    signs again, so a copy of it leaking later can forge nothing.
    master.key      32 random bytes: the key-encryption key that wraps the data keys of crypto.py.
    index.key       32 random bytes: root of the blind-index keys (searching encrypted identifiers, at_rest.py).
    pseudonym.key   32 random bytes: HMAC root for research pseudonyms; each project gets its own key by
                    HKDF, so pseudonyms are stable inside a project and unlinkable across projects.

Why these rules:
* Overwriting a key would silently make every encrypted identifier unreadable and every issued token
  invalid, so files are created with O_EXCL semantics (write a temp file, then link() it into place);
  if several worker processes start at once, exactly one key wins and the others read it.
* Files are mode 0600 and the folder 0700: anyone who can read master.key can read every identifier.
  A key file found readable by group/others is tightened and logged loudly.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger("healthtwin.security")

SIGNING_ALG = "ES256"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int, length: int | None = None) -> str:
    length = length or max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(length, "big"))


def public_jwk(public_key: Any) -> dict[str, str]:
    """The public JWK of an EC (P-256/P-384/P-521) or RSA key, with `kid` = its RFC 7638 thumbprint."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(public_key.curve.name)
        if crv is None:
            raise ValueError(f"unsupported EC curve {public_key.curve.name}")
        size = (public_key.curve.key_size + 7) // 8
        nums = public_key.public_numbers()
        jwk = {"kty": "EC", "crv": crv, "x": _int_b64(nums.x, size), "y": _int_b64(nums.y, size)}
    elif isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        jwk = {"kty": "RSA", "n": _int_b64(nums.n), "e": _int_b64(nums.e)}
    else:
        raise ValueError("only EC and RSA public keys are supported")
    jwk["kid"] = thumbprint(jwk)
    return jwk


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) over the required members only, in lexicographic order."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
    members = required.get(jwk.get("kty", ""))
    if members is None:
        raise ValueError(f"unsupported key type {jwk.get('kty')!r}")
    canonical = orjson.dumps({k: jwk[k] for k in members}, option=orjson.OPT_SORT_KEYS)
    return b64url(hashlib.sha256(canonical).digest())


def hkdf(root: bytes, info: str, length: int = 32) -> bytes:
    """A purpose-bound subkey: different `info` gives independent keys from one root."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info.encode("utf-8")).derive(root)


def key_id(secret: bytes) -> str:
    """A short public identifier of a symmetric key (never the key itself; one-way, keyed by the key)."""
    import hmac
    return hmac.new(secret, b"healthtwin key id v1", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class KeySet:
    signing_key: ec.EllipticCurvePrivateKey
    master_key: bytes
    index_key: bytes
    pseudonym_key: bytes
    kid: str = field(init=False)
    folder: Path | None = None
    retired_signing: tuple[ec.EllipticCurvePublicKey, ...] = ()  # still verify, no longer sign
    _jwks: dict[str, dict[str, str]] = field(init=False, repr=False)  # kid -> public JWK, current first

    def __post_init__(self) -> None:
        jwks = {}
        for key in (self.signing_key.public_key(), *self.retired_signing):
            jwk = public_jwk(key)
            jwk.update({"use": "sig", "alg": SIGNING_ALG})
            jwks.setdefault(jwk["kid"], jwk)
        object.__setattr__(self, "_jwks", jwks)
        object.__setattr__(self, "kid", next(iter(jwks)))

    def public_jwk(self) -> dict[str, str]:
        """The current signing key's public JWK."""
        return dict(self._jwks[self.kid])

    def verification_jwk(self, kid: str) -> dict[str, str] | None:
        """The public JWK that verifies tokens signed under `kid`: the current key's or a retired one's."""
        jwk = self._jwks.get(kid)
        return dict(jwk) if jwk is not None else None

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """What /auth/jwks publishes: the current key, then the retired ones whose tokens may still be live."""
        return {"keys": [dict(jwk) for jwk in self._jwks.values()]}

    def project_pseudonym_key(self, project: str) -> bytes:
        return hkdf(self.pseudonym_key, "healthtwin pseudonym v1|" + project)

    @classmethod
    def generate(cls) -> "KeySet":
        """An in-memory key set (tests, one-off tools); the server uses load_or_create."""
        return cls(ec.generate_private_key(ec.SECP256R1()), secrets.token_bytes(32), secrets.token_bytes(32),
                   secrets.token_bytes(32))


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Writes `path` only if it does not exist, atomically and with mode 0600; False if it already existed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if the target exists: never overwrites, and no half-written key is visible
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


def _read_private(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.error("key file %s was readable by others (mode %o); tightening to 0600 — consider rotating it",
                  path, mode)
        os.chmod(path, 0o600)
    return path.read_bytes()


def _secret_file(folder: Path, name: str) -> bytes:
    path = folder / name
    if not path.exists():
        if _create_exclusive(path, secrets.token_bytes(32)):
            log.warning("generated %s", path)
    data = _read_private(path)
    if len(data) != 32:
        raise ValueError(f"{path} must hold exactly 32 bytes, found {len(data)}; refusing to guess")
    return data


def load_or_create(data_dir: str | Path) -> KeySet:
    """Loads the keys from `<data_dir>/keys/`, generating any that are missing (and only those)."""
    folder = Path(data_dir) / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    signing_path = folder / "signing.pem"
    if not signing_path.exists():
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        if _create_exclusive(signing_path, pem):
            log.warning("generated token-signing key %s", signing_path)
    signing = _signing_key(signing_path)
    retired = tuple(_retired_key(path) for path in retired_signing_files(folder))
    return KeySet(signing, _secret_file(folder, "master.key"), _secret_file(folder, "index.key"),
                  _secret_file(folder, "pseudonym.key"), folder=folder, retired_signing=retired)


def _signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(_read_private(path), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path} must be a P-256 EC private key (ES256)")
    return key


def _retired_key(path: Path) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path} must be a P-256 EC public key")
    return key


def _numbered(folder: Path, name: str) -> list[Path]:
    """`name.<n>` files in `folder`, oldest (lowest n) first."""
    found = [p for p in folder.glob(name + ".*") if p.suffix[1:].isdigit()]
    return sorted(found, key=lambda p: int(p.suffix[1:]))


def retired_signing_files(folder: Path) -> list[Path]:
    return _numbered(folder, "signing.pub")


def rotate_signing_file(data_dir: str | Path) -> Path:
    """Replaces signing.pem with a new key, keeping the old one's public key as signing.pub.<n>; returns that
    file's path.

    Servers sharing the data folder sign with the new key within tokens.KEYS_RECHECK seconds (TokenService
    looks at the files now and then) and keep verifying tokens signed with the old one, which stays in the
    JWKS."""
    folder = Path(data_dir) / "keys"
    current = folder / "signing.pem"
    existing = retired_signing_files(folder)
    retired = folder / f"signing.pub.{1 + (int(existing[-1].suffix[1:]) if existing else 0)}"
    public = _signing_key(current).public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    if not _create_exclusive(retired, public):
        raise RuntimeError(f"{retired} exists already; refusing to overwrite a retired key")
    fresh = folder / ".signing.pem.next"
    fresh.unlink(missing_ok=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if not _create_exclusive(fresh, pem):
        raise RuntimeError(f"cannot create {fresh}")
    fresh.replace(current)  # atomic: a reader sees the old key or the new one, never a partial file
    return retired


def retire_signing_files(data_dir: str | Path, older_than: float) -> tuple[list[Path], list[Path]]:
    """Deletes the retired signing keys retired more than `older_than` seconds ago (every token they signed
    has expired by then); returns (deleted, kept)."""
    deleted, kept = [], []
    for path in retired_signing_files(Path(data_dir) / "keys"):
        if time.time() - path.stat().st_mtime > older_than:
            path.unlink()
            deleted.append(path)
        else:
            kept.append(path)
    return deleted, kept


def retired_master_keys(data_dir: str | Path) -> list[bytes]:
    """Previous master keys kept as `master.key.<n>` during a rotation, so old envelopes stay readable."""
    folder = Path(data_dir) / "keys"
    return [_read_private(p) for p in sorted(folder.glob("master.key.*")) if not p.name.endswith(".tmp")]
