"""Authentication and authorization (htpasswd, LDAP, Docker token auth). Not built yet."""
