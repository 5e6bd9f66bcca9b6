"""What every ``wharf`` command shares: the config file arguments and loading the
settings (one place for all commands; feature CLIs import it, not ``registry.cli``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from registry.config import ConfigError, Settings, load_settings


class _ConfigPath(argparse.Action):
    """Stores the config file given as ``FILE``, ``-c FILE`` or ``--config FILE`` in
    ``config``; two different files are an error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values is None:  # the optional positional, not given
            return
        given = getattr(namespace, self.dest, None)
        if given is not None and os.path.abspath(given) != os.path.abspath(values):
            parser.error(f"two config files given: {given} and {values}")
        setattr(namespace, self.dest, values)


def add_config_arguments(command: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """The config file arguments of a ``wharf`` command: ``-c/--config FILE`` and, with
    ``positional``, a bare ``FILE`` too (``wharf serve FILE``); ``args.config`` is the file
    or None. Commands with positional arguments of their own pass ``positional=False``."""
    if positional:
        command.add_argument(
            "config",
            nargs="?",
            action=_ConfigPath,
            metavar="CONFIG",
            help="YAML config file, reference registry format (or -c/--config CONFIG)",
        )
        command.add_argument(
            "-c", "--config", action=_ConfigPath, metavar="CONFIG", help="YAML config file"
        )
    else:
        command.add_argument(
            "-c",
            "--config",
            action=_ConfigPath,
            metavar="CONFIG",
            help="YAML config file (only as -c/--config here: the positional arguments are "
            "the command's own)",
        )


def settings_or_exit(path: str | None) -> Settings:
    """The settings of ``path`` (and the environment); a config error ends the command
    with its message and exit status 2."""
    try:
        return load_settings(path)
    except ConfigError as e:
        print(f"wharf: {e}", file=sys.stderr)
        raise SystemExit(2) from None
