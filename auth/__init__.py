"""Authentication and authorization: htpasswd users, access policies, Docker token auth.

Nothing here imports from ``registry/`` or ``storage/``: the registry wires these pieces
into its middleware (``registry/middleware/auth.py``) and its token endpoint.
"""
