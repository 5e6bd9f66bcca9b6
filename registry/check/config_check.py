"""The configuration's own problems, each with its key path, all at once: what does not
validate, files it names that cannot be read, addresses that do not parse, and keys
Wharf does not know (a typo, or a reference registry key Wharf ignores: a warning)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from registry.check.results import Result
from registry.config import ConfigError, Settings, load_settings
from registry.config.base import host_port


def load(path: str | None) -> tuple[Settings | None, list[Result]]:
    """The settings of ``path`` and the environment (None if they do not validate), and
    what is wrong with them."""
    results: list[Result] = []
    try:
        settings = load_settings(path)
    except ConfigError as e:
        if not e.problems:
            return None, [Result("config", path or "(environment)", "fail", str(e))]
        results += [Result("config", where, "fail", what) for where, what in e.problems]
        settings = None
    results += unknown_keys(path)
    if settings is not None:
        results += _files(settings) + _addresses(settings)
    if not any(r.status == "fail" for r in results):
        results.insert(0, Result("config", path or "(defaults)", "ok", "valid"))
    return settings, results


def unknown_keys(path: str | None) -> list[Result]:
    """Keys of the file that no setting reads."""
    if path is None:
        return []
    try:
        tree = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return []  # load_settings said so
    if not isinstance(tree, dict):
        return []
    return [
        Result("config", where, "warn", "unknown key: Wharf does not read it")
        for where in _unknown(tree, Settings, "")
    ]


def _unknown(tree: dict[str, Any], model: type[BaseModel], prefix: str) -> list[str]:
    found: list[str] = []
    fields = model.model_fields
    names = {f.alias or n: n for n, f in fields.items()} | {n: n for n in fields}
    for key, value in tree.items():
        where = f"{prefix}{key}"
        name = names.get(str(key))
        if name is None:
            found.append(where)
            continue
        inner = _model_of(fields[name].annotation)
        if inner is None:
            continue
        if isinstance(value, dict):
            found += _unknown(value, inner, where + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    found += _unknown(item, inner, f"{where}[{i}].")
    return found


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (itself, in a list, or optional), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _readable(where: str, path: str) -> list[Result]:
    if not path:
        return []
    if not os.path.isfile(path):
        return [Result("config", where, "fail", f"{path}: no such file")]
    if not os.access(path, os.R_OK):
        return [Result("config", where, "fail", f"{path}: not readable")]
    return []


def _files(settings: Settings) -> list[Result]:
    found: list[Result] = []
    tls = settings.http.tls
    found += _readable("http.tls.certificate", tls.certificate)
    found += _readable("http.tls.key", tls.key)
    auth = settings.auth
    if auth.htpasswd is not None:
        found += _readable("auth.htpasswd.path", auth.htpasswd.path)
    if auth.token is not None:
        found += _readable("auth.token.rootcertbundle", auth.token.rootcertbundle)
    if auth.tokenserver is not None:
        found += _readable("auth.tokenserver.key", auth.tokenserver.key)
        found += _readable("auth.tokenserver.certificate", auth.tokenserver.certificate)
    if auth.ldap is not None:
        found += _readable("auth.ldap.cacert", auth.ldap.cacert)
    for i, mirror in enumerate(settings.mirrors):
        found += _readable(f"mirrors[{i}].cacert", mirror.cacert)
    for i, rule in enumerate(settings.replication.rules):
        found += _readable(f"replication.rules[{i}].remote.cacert", rule.remote.cacert)
    return found


def _addresses(settings: Settings) -> list[Result]:
    found: list[Result] = []
    addresses = (("http.addr", settings.http.addr), ("http.debug.addr", settings.http.debug.addr))
    for where, addr in addresses:
        if not addr:
            continue
        try:
            host_port(addr, where)
        except ConfigError as e:
            found.append(Result("config", where, "fail", str(e)))
    return found
