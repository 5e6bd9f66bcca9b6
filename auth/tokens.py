"""Docker registry tokens: issuing them (the built-in token service) and verifying them.

An access token is a JWS-signed JWT whose header carries ``kid`` and the ``x5c``
certificate chain, and whose claims are ``iss``, ``sub``, ``aud`` (the registry's
service name), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access`` (a list of
``{"type", "name", "actions"}``). The verifier takes the signing key from ``x5c`` (the
chain must lead to a certificate of the root bundle), from a ``jwk`` header (only if it
is a trusted key) or from ``kid`` (a root certificate's or JWKS key's libtrust id, RFC
7638 thumbprint or JWKS ``kid``), then checks ``iss``, ``aud`` (string or list) and
``exp``/``nbf`` with 60 seconds of leeway.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth.keys import (
    PublicKey,
    SigningKey,
    jwk_thumbprint,
    libtrust_key_id,
)
from auth.scopes import AccessSet, ResourceScope, from_claim

LEEWAY_SECONDS = 60
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
REFRESH_SUFFIX = "#refresh"
CHAIN_CACHE = 64


class InvalidToken(Exception):
    """A token that is malformed, badly signed, expired, or not for this registry."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    subject: str
    access: AccessSet
    claims: dict[str, Any]


class TokenIssuer:
    """Signs access and refresh tokens for the built-in token service."""

    def __init__(
        self, signing: SigningKey, issuer: str, expiration: float, refresh_expiration: float
    ) -> None:
        self.signing = signing
        self.issuer = issuer
        self.expiration = int(expiration)
        self.refresh_expiration = int(refresh_expiration)

    def access_token(
        self, subject: str, audience: str, access: Iterable[ResourceScope], now: float | None = None
    ) -> tuple[str, int, int]:
        """A signed access token: (token, expires_in, issued_at)."""
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": issued + self.expiration,
            "nbf": issued - 1,
            "iat": issued,
            "jti": secrets.token_urlsafe(16),
            "access": [s.claim() for s in access],
        }
        return self._sign(claims), self.expiration, issued

    def refresh_token(self, subject: str, fingerprint: str, now: float | None = None) -> str:
        """A long-lived token that only this service accepts (its audience is not a
        registry), bound to the user's current password by ``fingerprint``."""
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.issuer + REFRESH_SUFFIX,
            "exp": issued + self.refresh_expiration,
            "iat": issued,
            "jti": secrets.token_urlsafe(16),
            "pwd": fingerprint,
        }
        return self._sign(claims)

    def check_refresh_token(self, token: str) -> tuple[str, str]:
        """The (subject, password fingerprint) of a refresh token we issued."""
        try:
            claims = jwt.decode(
                token,
                self.signing.key.public_key(),
                algorithms=[self.signing.algorithm],
                audience=self.issuer + REFRESH_SUFFIX,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(f"invalid refresh token: {e}") from None
        return str(claims["sub"]), str(claims.get("pwd", ""))

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims,
            self.signing.key,
            algorithm=self.signing.algorithm,
            headers=self.signing.headers(),
        )


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class TokenVerifier:
    """Verifies bearer tokens for one registry ``service`` from one ``issuer``."""

    def __init__(
        self,
        issuer: str,
        service: str,
        roots: Iterable[x509.Certificate] = (),
        jwks: dict[str, PublicKey] | None = None,
    ) -> None:
        self.issuer = issuer
        self.service = service
        self.roots = list(roots)
        self._trusted: dict[str, PublicKey] = dict(jwks or {})
        for cert in self.roots:
            key = cert.public_key()
            if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
                self._trusted[libtrust_key_id(key)] = key
                self._trusted[jwk_thumbprint(key)] = key
        self._trusted_spki = {_spki(k) for k in self._trusted.values()}
        # verified x5c chains: (key, valid from, valid until), so a token service's
        # chain is checked once, not on every request
        self._chains: dict[tuple[str, ...], tuple[PublicKey, dt.datetime, dt.datetime]] = {}
        if not self._trusted:
            raise ValueError("token auth needs a rootcertbundle or a jwks with a key")

    def verify(self, token: str) -> VerifiedToken:
        """The token's subject and access, or :class:`InvalidToken`."""
        if not token.isascii():
            raise InvalidToken("malformed token: not ASCII")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken(f"malformed token: {e}") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"unsupported algorithm {alg!r}")
        key = self._signing_key(header)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(f"token refused: {e}") from None
        return VerifiedToken(
            str(claims.get("sub") or ""), AccessSet(from_claim(claims.get("access"))), claims
        )

    def _signing_key(self, header: dict[str, Any]) -> PublicKey:
        if "x5c" in header:
            return self._from_chain(header["x5c"])
        if "jwk" in header:
            try:
                key = jwt.PyJWK(header["jwk"]).key
            except Exception as e:
                raise InvalidToken(f"bad jwk header: {e}") from None
            if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) or (
                _spki(key) not in self._trusted_spki
            ):
                raise InvalidToken("the jwk header is not a trusted key")
            return key
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self._trusted:
            return self._trusted[kid]
        raise InvalidToken(f"unknown signing key (kid {kid!r})")

    def _from_chain(self, x5c: Any) -> PublicKey:
        if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
            raise InvalidToken("x5c must be a non-empty list of certificates")
        cache_key = tuple(x5c)
        cached = self._chains.get(cache_key)
        if cached is not None:
            key, not_before, not_after = cached
            if not_before <= dt.datetime.now(dt.UTC) <= not_after:
                return key
        key, certs = self._check_chain(x5c)
        if len(self._chains) >= CHAIN_CACHE:
            self._chains.clear()
        self._chains[cache_key] = (
            key,
            max(c.not_valid_before_utc for c in certs),
            min(c.not_valid_after_utc for c in certs),
        )
        return key

    def _check_chain(self, x5c: list[str]) -> tuple[PublicKey, list[x509.Certificate]]:
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in x5c]
        except (ValueError, TypeError, binascii.Error) as e:
            raise InvalidToken(f"bad x5c certificate: {e}") from None
        moment = dt.datetime.now(dt.UTC)
        for cert in chain:
            if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
                raise InvalidToken("an x5c certificate is outside its validity period")
        # each certificate must be issued by the next; the last by (or be) a trusted root
        for child, parent in itertools.pairwise(chain):
            if not _issued_by(child, parent):
                raise InvalidToken("the x5c chain is broken")
            if not _is_ca(parent):
                raise InvalidToken("an x5c intermediate is not a CA certificate")
        last = chain[-1]
        if not any(last == root or _issued_by(last, root) for root in self.roots):
            raise InvalidToken("the x5c chain does not lead to a trusted root certificate")
        key = chain[0].public_key()
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise InvalidToken("unsupported x5c key type")
        return key, chain


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
