"""The integrity scrub (issue #18): stored blobs and manifests read back and checked
against their digests; bad content quarantined. See ``docs/scrub.md``."""
