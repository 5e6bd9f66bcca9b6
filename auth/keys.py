"""Keys and certificates for Docker token auth: loading, key ids, a self-signed pair.

Key ids in both forms clients and token services use: the RFC 7638 JWK thumbprint and
the legacy libtrust id (base32 of the SHA-256 of the DER public key, 48 characters in
groups of four) that the reference registry and docker_auth put in ``kid``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt import PyJWK

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class KeyFileError(Exception):
    """A key, certificate or JWKS that cannot be used."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The public JWK (required members only, as RFC 7638 hashes them)."""
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        return {"e": _b64url(_int_bytes(nums.e)), "kty": "RSA", "n": _b64url(_int_bytes(nums.n))}
    size = (key.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name)
    if crv is None:
        raise KeyFileError(f"unsupported curve {key.curve.name}")
    point = key.public_numbers()
    return {
        "crv": crv,
        "kty": "EC",
        "x": _b64url(point.x.to_bytes(size, "big")),
        "y": _b64url(point.y.to_bytes(size, "big")),
    }


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url)."""
    canonical = json.dumps(public_jwk(key), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def libtrust_key_id(key: PublicKey) -> str:
    """The libtrust key id: ``ABCD:EFGH:...`` (12 groups of 4, base32 of SHA-256[:30])."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, 48, 4))


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    """The JWS algorithm a key signs with: RS256, or ES256/384/512 by curve."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at least one)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read certificates {path}: {e.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise KeyFileError(f"{path} holds no PEM certificate: {e}") from None
    return certs


def load_private_key(path: str | Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as e:
        raise KeyFileError(f"cannot read key {path}: {e.strerror}") from None
    except ValueError as e:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path}: only RSA and EC keys are supported")
    return key


def load_jwks(path: str | Path) -> dict[str, PublicKey]:
    """Keys of a JWKS file by every id they answer to (``kid``, thumbprint, libtrust id)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise KeyFileError(f"cannot read JWKS {path}: {e}") from None
    keys: dict[str, PublicKey] = {}
    for entry in doc.get("keys", []) if isinstance(doc, dict) else []:
        try:
            key = PyJWK(entry).key
        except Exception as e:
            raise KeyFileError(f"JWKS {path}: unusable key: {e}") from None
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            continue
        for kid in (entry.get("kid"), jwk_thumbprint(key), libtrust_key_id(key)):
            if kid:
                keys[str(kid)] = key
    return keys


@dataclass(frozen=True)
class SigningKey:
    """The token service's private key and its certificate chain (leaf first)."""

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    @classmethod
    def load(cls, key_path: str | Path, cert_path: str | Path) -> SigningKey:
        key, chain = load_private_key(key_path), tuple(load_certificates(cert_path))
        leaf_public = (
            chain[0]
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        ours = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if leaf_public != ours:
            raise KeyFileError(f"the first certificate of {cert_path} is not for key {key_path}")
        return cls(key, chain)

    @property
    def algorithm(self) -> str:
        return algorithm_for(self.key)

    @property
    def kid(self) -> str:
        return libtrust_key_id(self.key.public_key())

    def headers(self) -> dict[str, Any]:
        """JWS headers: ``kid`` and the ``x5c`` chain."""
        x5c = [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in self.chain
        ]
        return {"kid": self.kid, "x5c": x5c}


def generate_self_signed(
    common_name: str = "wharf token signer", algorithm: str = "ES256", days: int = 365
) -> tuple[bytes, bytes]:
    """A new private key and a self-signed certificate for it, both PEM: (key, cert)."""
    key: PrivateKey
    if algorithm == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise KeyFileError(f"unsupported algorithm {algorithm} (RS256 or ES256)")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)
