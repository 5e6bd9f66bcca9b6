"""Pure OCI knowledge: names, media types, manifests. No I/O."""
