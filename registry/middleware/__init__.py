"""Pure ASGI middleware (no BaseHTTPMiddleware: it misbehaves with long streams)."""
