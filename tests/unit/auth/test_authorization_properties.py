"""Property tests of the ``Authorization`` parser and the gates behind it (issue #13):
whatever bytes a client sends, the answer is a caller or a 4xx error, never a crash."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth.htpasswd import Htpasswd
from auth.keys import load_certificates
from auth.logins import Logins
from auth.policy import Policy
from auth.throttle import LoginThrottle
from auth.tokens import TokenVerifier
from registry.errors import RegistryError
from registry.middleware.auth import (
    ANONYMOUS,
    BasicGate,
    Caller,
    TokenGate,
    decode_basic,
    parse_authorization,
)
from tests.support.auth import write_htpasswd, write_keys

CHALLENGE = {"WWW-Authenticate": 'Basic realm="t"'}

# header values as a client can send them: any bytes but CR, LF and NUL, often with a
# known scheme in front and base64 behind
raw_bytes = st.binary(max_size=200).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
)
schemes = st.sampled_from([b"", b"Basic ", b"basic ", b"Bearer ", b"BASIC  ", b"Digest "])
base64ish = st.binary(max_size=80).map(base64.b64encode)
header_values = st.one_of(
    raw_bytes,
    st.tuples(schemes, raw_bytes).map(b"".join),
    st.tuples(schemes, base64ish).map(b"".join),
    st.tuples(schemes, st.text(max_size=40).map(lambda t: t.encode("utf-8", "replace"))).map(
        b"".join
    ),
)


@given(header_values)
@settings(max_examples=400)
def test_parse_authorization_answers_or_refuses_with_401(value: bytes) -> None:
    text = value.decode("latin-1")
    try:
        kind, credentials = parse_authorization(text, CHALLENGE)
    except RegistryError as e:
        assert e.http_status == 401 and e.code == "UNAUTHORIZED"
        assert not text.isascii()
        return
    assert kind == kind.lower() and credentials == credentials.strip()
    if kind == "basic":
        decoded = decode_basic(credentials)
        assert decoded is None or isinstance(decoded, tuple)


@given(st.text(max_size=30).filter(lambda u: ":" not in u), st.text(max_size=30))
def test_decode_basic_round_trips(user: str, password: str) -> None:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    decoded = decode_basic(encoded)
    if not user and password:
        assert decoded is None
    elif not user:
        assert decoded == ANONYMOUS
    else:
        assert decoded == (user, password)


def _scope(value: bytes, path: str = "/v2/") -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "method": "GET",
        "headers": [(b"authorization", value)],
        "client": ("127.0.0.1", 4000),
    }


@pytest.fixture(scope="module")
def logins(tmp_path_factory: pytest.TempPathFactory) -> Logins:
    path: Path = write_htpasswd(tmp_path_factory.mktemp("props") / "htpasswd", {"alice": "pw"})
    # no waits: this checks answers, not the throttle
    return Logins(Policy(open_to_authenticated=True), LoginThrottle(free=10**9), Htpasswd(path))


@pytest.fixture(scope="module")
def token_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_keys(tmp_path_factory.mktemp("props-keys"))


def _admit(gate: BasicGate | TokenGate, value: bytes, label: str) -> Caller | RegistryError:
    async def run() -> Caller:
        return await gate.admit(_scope(value), label, [])

    try:
        return asyncio.run(run())
    except RegistryError as e:
        return e


@given(header_values, st.sampled_from(["base", "api", "tags"]))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_basic_gate_never_crashes(logins: Logins, value: bytes, label: str) -> None:
    answer = _admit(BasicGate(logins, logins.policy, "t"), value, label)
    if isinstance(answer, RegistryError):
        assert 400 <= answer.http_status < 500, answer


@given(header_values, st.sampled_from(["base", "api", "catalog"]))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_token_gate_never_crashes(
    logins: Logins, token_keys: tuple[Path, Path], value: bytes, label: str
) -> None:
    verifier = TokenVerifier("issuer", "service", load_certificates(str(token_keys[1])), {})
    gate = TokenGate(verifier, "http://x/token", "service", logins.policy, logins)
    answer = _admit(gate, value, label)
    if isinstance(answer, RegistryError):
        assert 400 <= answer.http_status < 500, answer
