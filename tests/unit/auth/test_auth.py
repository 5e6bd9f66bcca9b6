"""The auth package without a server: scopes, policy, htpasswd, token signing and checks."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from auth import scopes as sc
from auth.htpasswd import Htpasswd, HtpasswdError, hash_password
from auth.keys import (
    SigningKey,
    generate_self_signed,
    jwk_thumbprint,
    libtrust_key_id,
    load_jwks,
    public_jwk,
)
from auth.policy import Identity, Policy, Rule, Subjects
from auth.tokens import InvalidToken, TokenIssuer, TokenVerifier
from registry.config import ConfigError, load_settings

# --- scopes ---------------------------------------------------------------------------


def test_parse_scopes() -> None:
    got = sc.parse_scopes(
        [
            "repository:team/app:pull,push",
            "repository:team/app:delete registry:catalog:*",
            "repository(plugin):localhost:5000/x:pull",
            "garbage",
            "repository:name:",
        ]
    )
    assert got == [
        sc.ResourceScope("repository", "team/app", frozenset({"pull", "push", "delete"})),
        sc.ResourceScope("registry", "catalog", frozenset({"*"})),
        sc.ResourceScope("repository", "localhost:5000/x", frozenset({"pull"})),
    ]
    assert str(sc.repository("a/b", "push", "pull")) == "repository:a/b:pull,push"


def test_access_set_from_claim() -> None:
    access = sc.AccessSet(
        sc.from_claim(
            [
                {"type": "repository", "name": "a", "actions": ["pull"]},
                {"type": "repository", "name": "b", "actions": ["*"]},
                {"type": "registry", "name": "catalog", "actions": ["*"]},
                "junk",
                {"type": "repository", "name": 3, "actions": []},
            ]
        )
    )
    assert access.allows("repository", "a", "pull")
    assert not access.allows("repository", "a", "push")
    assert access.allows_all(sc.repository("b", "pull", "push", "delete"))
    assert access.allows("registry", "catalog", "*")
    assert access.repositories("push") == {"b"}
    assert sc.from_claim("nope") == []


# --- policy ---------------------------------------------------------------------------


def _policy() -> Policy:
    return Policy(
        rules=[
            Rule(("team-a/*",), frozenset({"pull", "push"}), groups=frozenset({"team-a"})),
            Rule(("team-a/secret",), frozenset(), groups=frozenset({"team-a"}), index=1),
            Rule(("team-a/*",), frozenset({"*"}), users=frozenset({"lead"}), index=2),
            Rule(("*",), frozenset({"pull"}), authenticated=True, index=3),
            Rule(("public/*", "docs"), frozenset({"pull"}), anonymous=True, index=4),
            Rule(("team-a/app-*",), frozenset({"pull"}), groups=frozenset({"team-a"}), index=5),
        ],
        admins=Subjects(users=frozenset({"root"}), groups=frozenset({"ops"})),
        catalog_readers=Subjects(users=frozenset({"auditor"})),
        groups={"team-a": ["alice", "lead"], "ops": ["olga"]},
    )


def test_most_specific_rule_wins() -> None:
    p = _policy()
    alice, lead = p.identity("alice"), p.identity("lead")
    assert alice.groups == frozenset({"team-a"})
    assert p.allowed(alice, "team-a/web") == {"pull", "push"}
    # an exact name beats the glob, even with fewer actions (here none)
    assert p.allowed(alice, "team-a/secret") == frozenset()
    # more literal characters beat fewer
    assert p.allowed(alice, "team-a/app-1") == {"pull"}
    # same pattern: a user rule beats a group rule
    assert p.allowed(lead, "team-a/web") == {"pull", "push", "delete"}
    # any authenticated user, anonymous
    assert p.allowed(p.identity("zed"), "else/where") == {"pull"}
    assert p.allowed(None, "else/where") == frozenset()
    assert p.allowed(None, "public/x") == {"pull"}
    assert p.allowed(None, "docs") == {"pull"}
    assert p.allowed(None, "docs/x") == frozenset()


def test_admins_and_catalog() -> None:
    p = _policy()
    assert p.allowed(p.identity("root"), "any/thing") == {"pull", "push", "delete"}
    assert p.allowed(p.identity("olga"), "any/thing") == {"pull", "push", "delete"}
    assert p.may_list_catalog(p.identity("olga"))
    assert p.may_list_catalog(p.identity("auditor"))
    assert not p.may_list_catalog(p.identity("alice"))
    assert not p.may_list_catalog(None)
    assert Policy(open_to_authenticated=True).may_list_catalog(Identity("x"))


def test_explain_names_the_rule() -> None:
    p = _policy()
    d = p.explain(p.identity("alice"), "team-a/secret")
    assert d.rules == (p.rules[1],)
    assert "rule #2: team-a/secret -> nothing for group team-a" in d.reason
    assert "as group" in d.reason
    assert "administrator" in p.explain(p.identity("root"), "x").reason
    assert "no rule gives anonymous access to x/y" in p.explain(None, "x/y").reason


def test_ties_add_up() -> None:
    p = Policy(
        rules=[
            Rule(("a/*",), frozenset({"pull"}), groups=frozenset({"g1"})),
            Rule(("a/*",), frozenset({"push"}), groups=frozenset({"g2"})),
        ]
    )
    assert p.allowed(Identity("u", frozenset({"g1", "g2"})), "a/b") == {"pull", "push"}


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="anonymous"):
        Rule(("x",), frozenset({"push"}), anonymous=True)
    with pytest.raises(ValueError, match="unknown action"):
        Rule(("x",), frozenset({"write"}), users=frozenset({"u"}))
    with pytest.raises(ValueError, match="needs users"):
        Rule(("x",), frozenset({"pull"}))


# --- htpasswd -------------------------------------------------------------------------


def _hash(pw: str) -> str:
    return bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()


def test_htpasswd_checks_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(
        f"# users\n\nalice:{_hash('one')}\nbroken line\nmd5user:$apr1$abc$def\n"
        f"bob:{hash_password('two', rounds=4)}\n"
    )
    h = Htpasswd(path)
    assert h.users() == ["alice", "bob"]
    assert h.check("alice", "one")
    assert h.check("alice", "one")  # cached
    assert not h.check("alice", "two")
    assert h.check("bob", "two")
    assert not h.check("nobody", "one")
    assert not h.check("md5user", "x")
    before = h.fingerprint("alice")
    assert before is not None and h.fingerprint("nobody") is None

    path.write_text(f"alice:{_hash('three')}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert not h.check("alice", "one")  # the cache went with the old file
    assert h.check("alice", "three")
    assert not h.check("bob", "two")
    assert h.fingerprint("alice") != before


def test_htpasswd_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HtpasswdError):
        Htpasswd(tmp_path / "none")
    path = tmp_path / "h"
    path.write_text(f"alice:{_hash('one')}\n")
    h = Htpasswd(path)
    path.unlink()
    assert h.check("alice", "one")  # keeps the users it had


async def test_htpasswd_authenticate_runs_in_a_thread(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_text(f"alice:{_hash('one')}\n")
    h = Htpasswd(path)
    assert await h.authenticate("alice", "one")
    assert not await h.authenticate("alice", "nope")


# --- tokens ---------------------------------------------------------------------------


def _signing(tmp_path: Path, algorithm: str = "ES256") -> SigningKey:
    key_pem, cert_pem = generate_self_signed(algorithm=algorithm)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "k.pem").write_bytes(key_pem)
    (tmp_path / "c.pem").write_bytes(cert_pem)
    return SigningKey.load(tmp_path / "k.pem", tmp_path / "c.pem")


def _issuer(signing: SigningKey, issuer: str = "iss", expiration: float = 300) -> TokenIssuer:
    return TokenIssuer(signing, issuer, expiration, 3600)


def _verifier(signing: SigningKey, **kw: Any) -> TokenVerifier:
    return TokenVerifier(kw.pop("issuer", "iss"), kw.pop("service", "svc"), signing.chain, **kw)


PULL_A = [sc.repository("a", "pull")]


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_issue_and_verify(tmp_path: Path, algorithm: str) -> None:
    signing = _signing(tmp_path, algorithm)
    token, expires_in, issued = _issuer(signing).access_token("alice", "svc", PULL_A)
    assert expires_in == 300 and abs(issued - time.time()) < 5
    got = _verifier(signing).verify(token)
    assert got.subject == "alice"
    assert got.access.allows("repository", "a", "pull")
    assert not got.access.allows("repository", "a", "push")
    assert jwt.get_unverified_header(token)["alg"] == algorithm


def _sign(signing: SigningKey, claims: dict[str, Any], headers: dict[str, Any]) -> str:
    return jwt.encode(claims, signing.key, algorithm=signing.algorithm, headers=headers)


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "iss",
        "sub": "u",
        "aud": "svc",
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "access": [{"type": "repository", "name": "a", "actions": ["pull"]}],
    }
    claims.update(over)
    return claims


def test_refusals(tmp_path: Path) -> None:
    signing = _signing(tmp_path / "a")
    other = _signing(tmp_path / "b")
    v = _verifier(signing)
    now = int(time.time())
    cases = {
        "foreign key (x5c not chained to the root)": _sign(other, _claims(), other.headers()),
        "foreign key by kid": _sign(other, _claims(), {"kid": other.kid}),
        "wrong aud": _sign(signing, _claims(aud="other"), signing.headers()),
        "wrong aud list": _sign(signing, _claims(aud=["x", "y"]), signing.headers()),
        "wrong iss": _sign(signing, _claims(iss="evil"), signing.headers()),
        "expired": _sign(signing, _claims(exp=now - 61), signing.headers()),
        "not yet valid": _sign(signing, _claims(nbf=now + 120), signing.headers()),
        "no exp": _sign(signing, {k: v for k, v in _claims().items() if k != "exp"}, {}),
        "unknown kid": _sign(signing, _claims(), {"kid": "nope"}),
        "untrusted jwk": _sign(other, _claims(), {"jwk": public_jwk(other.key.public_key())}),
        "bad x5c": _sign(signing, _claims(), {"x5c": ["!!"]}),
        "HS256": jwt.encode(_claims(), "s" * 40, algorithm="HS256"),
        "none": jwt.encode(_claims(), None, algorithm="none"),
    }
    for name, token in cases.items():
        with pytest.raises(InvalidToken):
            v.verify(token)
            pytest.fail(name)
    good = _sign(signing, _claims(), signing.headers())
    head, payload, sig = good.split(".")
    bad_sig = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    assert v.verify(good).subject == "u"  # the chain is now cached: the signature still counts
    with pytest.raises(InvalidToken):
        v.verify(f"{head}.{payload}.{bad_sig}")


def test_accepted_forms(tmp_path: Path) -> None:
    signing = _signing(tmp_path)
    v = _verifier(signing)
    pub = signing.key.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    now = int(time.time())
    for headers in (
        signing.headers(),
        {"kid": libtrust_key_id(pub)},
        {"kid": jwk_thumbprint(pub)},
        {"jwk": public_jwk(pub)},
    ):
        assert v.verify(_sign(signing, _claims(), headers)).subject == "u"
    # aud as a list holding the service; exp and nbf within the 60 s leeway
    assert v.verify(_sign(signing, _claims(aud=["x", "svc"]), signing.headers()))
    assert v.verify(_sign(signing, _claims(exp=now - 30), signing.headers()))
    assert v.verify(_sign(signing, _claims(nbf=now + 30), signing.headers()))


def test_jwks_keys(tmp_path: Path) -> None:
    signing = _signing(tmp_path)
    jwk = public_jwk(signing.key.public_key())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "my-key"}]}))
    keys = load_jwks(path)
    v = TokenVerifier("iss", "svc", jwks=keys)
    assert v.verify(_sign(signing, _claims(), {"kid": "my-key"})).subject == "u"
    assert v.verify(_sign(signing, _claims(), {"kid": jwk_thumbprint(signing.key.public_key())}))
    with pytest.raises(ValueError):
        TokenVerifier("iss", "svc")


def test_x5c_chain_through_an_intermediate(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)

    def cert(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: Any, ca: bool
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = cert("root", root_key, "root", root_key, True)
    mid = cert("mid", mid_key, "root", root_key, True)
    leaf = cert("leaf", leaf_key, "mid", mid_key, False)
    chain = SigningKey(leaf_key, (leaf, mid))
    token = _issuer(chain).access_token("u", "svc", PULL_A)[0]
    assert len(jwt.get_unverified_header(token)["x5c"]) == 2
    assert TokenVerifier("iss", "svc", [root]).verify(token).subject == "u"
    # a certificate that is not a CA cannot vouch for another key
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = cert("rogue", rogue_key, "leaf", leaf_key, False)
    rogue_chain = SigningKey(rogue_key, (rogue, leaf, mid))
    with pytest.raises(InvalidToken, match="not a CA"):
        TokenVerifier("iss", "svc", [root]).verify(
            _issuer(rogue_chain).access_token("u", "svc", PULL_A)[0]
        )
    # without the intermediate the chain does not reach the root
    alone = _sign(SigningKey(leaf_key, (leaf,)), _claims(), SigningKey(leaf_key, (leaf,)).headers())
    with pytest.raises(InvalidToken, match="trusted root"):
        TokenVerifier("iss", "svc", [root]).verify(alone)
    # the pair written as PEM loads back
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "chain.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, mid))
    )
    assert len(SigningKey.load(tmp_path / "leaf.key", tmp_path / "chain.pem").chain) == 2


def test_refresh_tokens(tmp_path: Path) -> None:
    signing = _signing(tmp_path)
    issuer = _issuer(signing)
    refresh = issuer.refresh_token("alice", "fp")
    assert issuer.check_refresh_token(refresh) == ("alice", "fp")
    with pytest.raises(InvalidToken):  # not an access token
        TokenVerifier("iss", "iss#refresh" + "x", signing.chain).verify(refresh)
    access = issuer.access_token("alice", "svc", PULL_A)[0]
    with pytest.raises(InvalidToken):  # and an access token is no refresh token
        issuer.check_refresh_token(access)


def test_key_mismatch_is_refused(tmp_path: Path) -> None:
    a, b = generate_self_signed(), generate_self_signed()
    (tmp_path / "k").write_bytes(a[0])
    (tmp_path / "c").write_bytes(b[1])
    with pytest.raises(Exception, match="not for key"):
        SigningKey.load(tmp_path / "k", tmp_path / "c")


# --- config ---------------------------------------------------------------------------


def test_auth_config(tmp_path: Path) -> None:
    assert load_settings(None, env={}).auth.mode == "none"
    s = load_settings(
        None,
        env={"REGISTRY_AUTH_HTPASSWD_REALM": "r", "REGISTRY_AUTH_HTPASSWD_PATH": "/x"},
    )
    assert s.auth.mode == "htpasswd"
    assert s.auth.htpasswd is not None and s.auth.htpasswd.path == "/x"
    cfg = tmp_path / "c.yml"
    cfg.write_text("auth:\n  silly:\n    realm: x\n    service: y\n")
    with pytest.raises(ConfigError, match="silly"):
        load_settings(cfg, env={})
    cfg.write_text("auth:\n  tokenserver:\n    key: k\n    certificate: c\n")
    with pytest.raises(ConfigError, match=r"needs auth\.token"):
        load_settings(cfg, env={})
    cfg.write_text("auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n")
    with pytest.raises(ConfigError, match="rootcertbundle"):
        load_settings(cfg, env={})
    cfg.write_text(
        "auth:\n  htpasswd: {path: /x}\n  policy:\n    rules:\n"
        "      - {repository: 'a/*', users: [u], actions: [pull, fly]}\n"
    )
    with pytest.raises(ConfigError):
        load_settings(cfg, env={})


# --- CLI ------------------------------------------------------------------------------


def test_cli_keygen_and_policy_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from registry.cli import main

    assert main(["auth", "keygen", str(tmp_path / "keys"), "--algorithm", "RS256"]) == 0
    signing = SigningKey.load(tmp_path / "keys" / "token.key", tmp_path / "keys" / "token.crt")
    assert signing.algorithm == "RS256"
    assert (tmp_path / "keys" / "token.key").stat().st_mode & 0o777 == 0o600

    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "auth:\n  htpasswd: {path: /x}\n  policy:\n    groups: {team-a: [alice]}\n"
        "    rules:\n"
        "      - {repository: 'team-a/*', groups: [team-a], actions: [pull, push]}\n"
        "      - {repository: 'public/*', anonymous: true, actions: [pull]}\n"
    )
    capsys.readouterr()
    assert main(["policy", "explain", "alice", "team-a/app", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "alice on team-a/app: pull,push" in out
    assert "rule #1: team-a/* -> pull,push for group team-a" in out
    assert "groups: team-a" in out
    assert main(["policy", "explain", "anonymous", "team-a/app", "-c", str(cfg)]) == 0
    assert "anonymous on team-a/app: nothing" in capsys.readouterr().out


def test_serve_stops_on_unusable_auth_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from registry.cli import main

    cfg = tmp_path / "c.yml"
    cfg.write_text(
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f"auth: {{htpasswd: {{path: {tmp_path / 'missing'}}}}}\n"
    )
    assert main(["serve", str(cfg)]) == 2
    assert "cannot read htpasswd file" in capsys.readouterr().err


# --- failed logins --------------------------------------------------------------------


def test_login_throttle() -> None:
    from auth.throttle import LoginThrottle

    now = [1000.0]
    t = LoginThrottle(free=2, base=0.5, cap=2.0, window=60, max_keys=4, clock=lambda: now[0])
    assert t.delay("alice", "1.2.3.4") == 0
    assert t.failed("alice", "1.2.3.4") == 1
    assert t.failed("alice", "1.2.3.4") == 2
    assert t.delay("alice", "1.2.3.4") == 0.5
    assert t.delay("alice", "9.9.9.9") == 0.5  # per user ...
    assert t.delay("bob", "1.2.3.4") == 0.5  # ... and per address
    assert t.delay("bob", "9.9.9.9") == 0
    t.failed("alice", "1.2.3.4")
    t.failed("alice", "1.2.3.4")
    assert t.delay("alice", "1.2.3.4") == 2.0  # capped
    t.succeeded("alice", "1.2.3.4")
    assert t.delay("alice", "1.2.3.4") == 0
    t.failed("carol", "5.5.5.5")
    t.failed("carol", "5.5.5.5")
    now[0] += 61
    assert t.failures("carol", "5.5.5.5") == 0  # outside the window
    for i in range(10):
        t.failed(f"u{i}", f"a{i}")
    assert len(t._failures) <= 4


def test_built_in_service_trusts_its_own_certificate(tmp_path: Path) -> None:
    """Without auth.token.rootcertbundle the registry trusts the token service's chain."""
    from registry.accounts.setup import build_auth
    from registry.accounts.token import build_token_endpoint
    from registry.middleware.auth import TokenGate

    key_pem, cert_pem = generate_self_signed()
    (tmp_path / "k").write_bytes(key_pem)
    (tmp_path / "c").write_bytes(cert_pem)
    (tmp_path / "h").write_text(f"alice:{_hash('pw')}\n")
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        f"auth:\n  htpasswd: {{path: {tmp_path / 'h'}}}\n"
        "  token: {realm: 'https://r.example/auth/token', service: s, issuer: i}\n"
        f"  tokenserver: {{key: {tmp_path / 'k'}, certificate: {tmp_path / 'c'}}}\n"
    )
    settings = load_settings(cfg, env={})
    setup = build_auth(settings.auth)
    assert setup is not None and isinstance(setup.gate, TokenGate)
    endpoint = build_token_endpoint(settings.auth, setup)
    assert endpoint is not None and endpoint.path == "/auth/token"
    token = endpoint.issuer.access_token("alice", "s", PULL_A)[0]
    assert setup.gate.verifier.verify(token).subject == "alice"
