"""Accounts (issue #4): robot accounts (``robots`` table, ``/api/robots``, ``wharf robot``),
the built-in token service, and the composition of auth from the ``auth`` settings
(htpasswd, LDAP, robots, policy, throttle) that the app and the auth middleware use.
See docs/auth.md."""
