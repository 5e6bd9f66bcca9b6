"""A private OpenLDAP server (Debian's slapd) for the LDAP tests.

Its own ``slapd.conf``, MDB database, self-signed TLS certificate (CN=localhost, SAN
127.0.0.1) and two free ports: ``ldap://`` (StartTLS available) and ``ldaps://``. Never
touches the system slapd. The directory (base ``dc=example,dc=org``):

- ``uid=NAME,ou=people,...`` for alice, bob, carol, dave (password ``NAMEpw``);
- ``cn=registry,ou=services,...`` (password ``svcpw``): the service account, reads all;
- groupOfNames ``cn=devs`` (alice, bob, dave) and ``cn=admins`` (alice), with the
  memberof overlay keeping ``memberOf`` on the users;
- posixGroup ``cn=ops`` (memberUid carol).

Authenticated users may read the tree; anonymous callers may only bind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.auth import write_htpasswd, write_keys
from tests.support.server import WharfServer, free_port

BASE = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PW = "adminpw"
SERVICE_DN = f"cn=registry,ou=services,{BASE}"
SERVICE_PW = "svcpw"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
USERS = ("alice", "bob", "carol", "dave")
GROUP_MEMBERS = {"devs": ("alice", "bob", "dave"), "admins": ("alice",)}
POSIX_MEMBERS = {"ops": ("carol",)}
SLAPD = "/usr/sbin/slapd"


def password(user: str) -> str:
    return f"{user}pw"


def user_dn(user: str) -> str:
    return f"uid={user},{PEOPLE}"


def _conf(workdir: Path) -> str:
    return f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile  {workdir}/slapd.pid
argsfile {workdir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCertificateFile    {workdir}/tls/cert.pem
TLSCertificateKeyFile {workdir}/tls/key.pem

database mdb
maxsize  104857600
suffix   "{BASE}"
rootdn   "{ADMIN_DN}"
rootpw   {ADMIN_PW}
directory {workdir}/db
index objectClass eq
index uid,cn,member,memberOf,memberUid eq
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="{SERVICE_DN}" read
  by users read
  by * none
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
"""


def _seed() -> str:
    entries = [
        f"dn: {BASE}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n"
        "o: Example Org\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: {SERVICE_DN}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
        f"cn: registry\nuserPassword: {SERVICE_PW}\n",
    ]
    for n, user in enumerate(USERS, 10001):
        entries.append(
            f"dn: {user_dn(user)}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {user}\ncn: {user.title()}\nsn: {user.title()}\nmail: {user}@example.org\n"
            f"uidNumber: {n}\ngidNumber: {n}\nhomeDirectory: /home/{user}\n"
            f"userPassword: {password(user)}\n"
        )
    for group, members in GROUP_MEMBERS.items():
        lines = "".join(f"member: {user_dn(u)}\n" for u in members)
        entries.append(f"dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    for n, (group, members) in enumerate(POSIX_MEMBERS.items(), 20001):
        lines = "".join(f"memberUid: {u}\n" for u in members)
        entries.append(
            f"dn: cn={group},{GROUPS}\nobjectClass: posixGroup\ncn: {group}\n"
            f"gidNumber: {n}\n{lines}"
        )
    return "\n".join(entries)


class Slapd:
    """One slapd process with its own config, data and ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.port = free_port()
        self.ldaps_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def cacert(self) -> Path:
        return self.workdir / "tls" / "cert.pem"

    def start(self, timeout: float = 30) -> Slapd:
        if not os.path.exists(SLAPD) or shutil.which("ldapadd") is None:
            raise RuntimeError("slapd / ldap-utils missing: run ./scripts/install.sh --test")
        fresh = not (self.workdir / "db" / "data.mdb").exists()  # a restart keeps the data
        (self.workdir / "db").mkdir(parents=True, exist_ok=True)
        (self.workdir / "tls").mkdir(exist_ok=True)
        key = str(self.workdir / "tls/key.pem")
        openssl = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost"
        if not self.cacert.exists():
            subprocess.run(
                [
                    *openssl.split(),
                    *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                    *("-keyout", key, "-out", str(self.cacert)),
                ],
                check=True,
                capture_output=True,
            )
        conf = self.workdir / "slapd.conf"
        conf.write_text(_conf(self.workdir))
        urls = f"{self.url}/ {self.ldaps_url}/"
        with (self.workdir / "slapd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [SLAPD, "-f", str(conf), "-h", urls, "-d", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            probe = subprocess.run(
                ["ldapsearch", "-x", "-H", self.url, "-s", "base", "-b", "", "namingContexts"],
                capture_output=True,
            )
            if probe.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = (self.workdir / "slapd.log").read_text(errors="replace")
                raise RuntimeError(f"slapd did not start:\n{log_text[-2000:]}")
            time.sleep(0.1)
        if fresh:
            self.admin("ldapadd", _seed())
        return self

    def admin(self, tool: str, ldif: str) -> None:
        """Run ``ldapadd`` / ``ldapmodify`` as the directory's administrator."""
        subprocess.run(
            [tool, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PW],
            input=ldif.encode(),
            check=True,
            capture_output=True,
        )

    def remove_member(self, group: str, user: str) -> None:
        """Take ``user`` out of the groupOfNames ``group``."""
        self.admin(
            "ldapmodify",
            f"dn: cn={group},{GROUPS}\nchangetype: modify\ndelete: member\n"
            f"member: {user_dn(user)}\n",
        )

    def add_member(self, group: str, user: str) -> None:
        self.admin(
            "ldapmodify",
            f"dn: cn={group},{GROUPS}\nchangetype: modify\nadd: member\nmember: {user_dn(user)}\n",
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# Who may do what in the LDAP tests: groups come from the directory (devs, admins,
# ops) and from robot accounts (ci).
LDAP_POLICY: dict[str, Any] = {
    "admins": {"groups": ["admins"]},
    "rules": [
        {"repository": "devs/*", "groups": ["devs"], "actions": ["pull", "push", "delete"]},
        {"repository": "ops/*", "groups": ["ops"], "actions": ["pull", "push"]},
        {"repository": "ci/*", "groups": ["ci"], "actions": ["pull", "push"]},
        {"repository": "*", "authenticated": True, "actions": ["pull"]},
    ],
}


def ldap_settings(
    slapd: Slapd, how: str = "starttls", refresh: str = "2s", **extra: Any
) -> dict[str, Any]:
    """``auth.ldap`` for ``slapd``: ``starttls`` (search then bind, ldap:// + StartTLS),
    ``ldaps`` (search then bind over ldaps://) or ``direct`` (bind with a DN template
    over LDAPS, groups read by the service account)."""
    cfg: dict[str, Any] = {
        "url": slapd.url,
        "starttls": True,
        "cacert": str(slapd.cacert),
        "binddn": SERVICE_DN,
        "bindpassword": SERVICE_PW,
        "userbase": PEOPLE,
        "userfilter": "(objectClass=inetOrgPerson)",
        "groupbase": GROUPS,
        "groupkinds": ["groupOfNames", "posixGroup"],
        "timeout": "3s",
        "poolsize": 2,
        "refresh": refresh,
        "realm": "wharf-ldap",
    }
    if how == "ldaps":
        cfg.update(url=slapd.ldaps_url, starttls=False, groupkinds=["memberOf", "posixGroup"])
    elif how == "direct":
        cfg.update(url=slapd.ldaps_url, starttls=False, userdn=f"uid={{user}},{PEOPLE}")
        del cfg["userbase"]
    cfg.update(extra)
    return cfg


# one process: the LDAP caches and the metrics the tests read are per process
ONE_WORKER = {"workers": 1}


def metric(server: WharfServer, name: str, **labels: str) -> float:
    """The value of one sample of ``/metrics`` (0 if absent)."""
    text = httpx.get(server.metrics_url).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    return 0.0


def token_config(workdir: Path, port: int, ldap: dict[str, Any]) -> dict[str, Any]:
    """Token mode (built-in token service), htpasswd user root and LDAP users."""
    key, cert = write_keys(workdir / "keys")
    return {
        "http": ONE_WORKER,
        "auth": {
            # htpasswd users and LDAP users side by side
            "htpasswd": {
                "realm": "wharf-ldap",
                "path": str(write_htpasswd(workdir / "htpasswd", {"root": "root-pw"})),
            },
            "ldap": ldap,
            "token": {
                "realm": f"http://127.0.0.1:{port}/token",
                "service": "wharf-test",
                "issuer": "wharf-test-issuer",
                "rootcertbundle": str(cert),
            },
            "tokenserver": {"key": str(key), "certificate": str(cert)},
            "policy": LDAP_POLICY,
        },
    }
