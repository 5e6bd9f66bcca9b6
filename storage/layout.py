"""Where things live inside a storage driver's namespace."""

from __future__ import annotations

from storage.digest import Digest


def blob_path(digest: Digest) -> str:
    """Content-addressed path of a blob's bytes (shared by every repository)."""
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def upload_dir(upload_id: str) -> str:
    """Directory holding one upload session's files."""
    return f"uploads/{upload_id}"


def upload_data_path(upload_id: str) -> str:
    """The file an upload's bytes are appended to."""
    return f"{upload_dir(upload_id)}/data"


def upload_info_path(upload_id: str) -> str:
    """A small JSON file with the upload's repository and start time."""
    return f"{upload_dir(upload_id)}/info.json"
