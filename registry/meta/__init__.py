"""Metadata: repositories, blob links, manifests, tags. All SQLAlchemy lives here."""
