"""Deterministic, offline OCI image-layout builder for the end-to-end tests (stdlib only).

``build_images(outdir)`` writes one OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/...``) with these tags (``org.opencontainers.image.ref.name``):

``small``       1 gzip layer, ~1 MiB of random bytes (linux/amd64)
``multilayer``  3 gzip layers: tiny text files, ~4 MiB (half random, half zeros),
                and one layer of 105 MiB random bytes (over 100 MB)
``multi``       OCI image index with linux/amd64 and linux/arm64 children
``artifact``    OCI 1.1 artifact manifest (``artifactType``, empty config
                ``application/vnd.oci.empty.v1+json``, ``subject`` -> ``small``)
``sbom``        a second artifact with another ``artifactType`` and the same subject

Layers are real tar streams (PAX, mtime 0, uid/gid 0) so docker and podman can load
them; configs carry correct ``rootfs.diff_ids``. Random content comes from
``random.Random(seed)`` in fixed 1 MiB chunks and gzip headers have mtime 0, so the
same Python/zlib gives the same digests on every run. The digests are computed while
writing and returned, so tests compare against them rather than hard-coding them.

Run ``python -m tests.support.images OUTDIR`` to build a layout by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

SIGNATURE_TYPE = "application/vnd.example.signature.v1+json"
SBOM_TYPE = "application/vnd.example.sbom.v1+json"

MiB = 1024 * 1024
_CHUNK = MiB


@dataclass(frozen=True)
class Image:
    """What a test expects of one tagged manifest (or index) in the layout."""

    name: str
    digest: str
    size: int
    media_type: str
    config_digest: str = ""
    layers: tuple[str, ...] = ()
    layer_sizes: tuple[int, ...] = ()
    platform: str = ""  # "linux/amd64" for platform children of an index
    artifact_type: str = ""
    subject: str = ""
    children: tuple[Image, ...] = ()

    def child(self, arch: str) -> Image:
        """The index child for ``linux/<arch>``."""
        for c in self.children:
            if c.platform == f"linux/{arch}":
                return c
        raise KeyError(arch)


@dataclass
class ImageSet:
    """The built layout and the expected images, by tag."""

    layout: Path
    images: dict[str, Image] = field(default_factory=dict)

    def __getitem__(self, tag: str) -> Image:
        return self.images[tag]

    def ref(self, tag: str) -> str:
        """The ``oci:`` transport reference skopeo understands."""
        return f"oci:{self.layout}:{tag}"


# --- reading layouts (also used to check what a client pulled back) ---


def read_index(layout: Path) -> dict[str, dict[str, Any]]:
    """``index.json`` descriptors keyed by their ref.name annotation."""
    index = json.loads((layout / "index.json").read_text())
    return {
        d.get("annotations", {}).get(REF_NAME, d["digest"]): d for d in index.get("manifests", [])
    }


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    return layout / "blobs" / algorithm / hexpart


def read_blob(layout: Path, digest: str) -> bytes:
    return blob_path(layout, digest).read_bytes()


def file_digest(path: Path) -> str:
    """sha256 of a file's content, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


# --- writing ---


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _HashingWriter:
    """A write-only file object that hashes, counts and forwards bytes."""

    def __init__(self, out: _Writable) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.hash.update(data)
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        return f"sha256:{self.hash.hexdigest()}"


class _RandomReader:
    """``size`` seeded pseudo-random bytes, then ``zeros`` zero bytes.

    Bytes come from fixed 1 MiB ``randbytes`` chunks, so the content does not depend on
    the read sizes the caller (tarfile) happens to use.
    """

    def __init__(self, seed: int, size: int, zeros: int = 0) -> None:
        self.rng = random.Random(seed)
        self.random_left = size
        self.zeros_left = zeros
        self.buf = b""

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.random_left + self.zeros_left + len(self.buf)
        out = bytearray()
        while len(out) < n:
            if not self.buf:
                if self.random_left:
                    k = min(_CHUNK, self.random_left)
                    self.buf = self.rng.randbytes(k)
                    self.random_left -= k
                elif self.zeros_left:
                    k = min(_CHUNK, self.zeros_left)
                    self.buf = bytes(k)
                    self.zeros_left -= k
                else:
                    break
            take = n - len(out)
            out += self.buf[:take]
            self.buf = self.buf[take:]
        return bytes(out)


@dataclass
class _File:
    """One regular file of a layer: literal ``data`` or ``size`` random bytes."""

    path: str
    data: bytes = b""
    seed: int = 0
    size: int = 0
    zeros: int = 0

    @property
    def length(self) -> int:
        return len(self.data) if self.data else self.size + self.zeros

    def reader(self) -> io.BytesIO | _RandomReader:
        if self.data:
            return io.BytesIO(self.data)
        return _RandomReader(self.seed, self.size, self.zeros)


def _text(path: str, text: str) -> _File:
    return _File(path, data=text.encode())


class Layout:
    """An OCI image layout being written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobdir = root / "blobs" / "sha256"
        self.blobdir.mkdir(parents=True, exist_ok=True)
        self.refs: list[dict[str, Any]] = []

    def put(self, data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        path = self.blobdir / digest
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    def put_json(self, obj: Any, media_type: str) -> dict[str, Any]:
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        return {"mediaType": media_type, **self.put(data)}

    def put_layer(self, files: list[_File]) -> tuple[dict[str, Any], str]:
        """Write a tar+gzip layer streamed to disk; returns (descriptor, diff_id)."""
        fd, tmpname = tempfile.mkstemp(dir=self.blobdir, prefix=".layer-")
        with os.fdopen(fd, "wb") as out:
            compressed = _HashingWriter(out)
            # filename="" and mtime=0: a deterministic gzip header
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=compressed, compresslevel=1, mtime=0
            ) as gz:
                raw = _HashingWriter(gz)
                with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                    _write_tar(tf, files)
        path = self.blobdir / compressed.digest.split(":", 1)[1]
        os.chmod(tmpname, 0o644)
        os.replace(tmpname, path)
        desc = {"mediaType": OCI_LAYER_GZ, "digest": compressed.digest, "size": compressed.count}
        return desc, raw.digest

    def tag(self, desc: dict[str, Any], name: str) -> None:
        self.refs.append({**desc, "annotations": {REF_NAME: name}})

    def finish(self) -> None:
        (self.root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        (self.root / "index.json").write_text(json.dumps(index, indent=1))


def _write_tar(tf: tarfile.TarFile, files: list[_File]) -> None:
    dirs: set[str] = set()
    for f in files:
        parts = f.path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        ti = tarfile.TarInfo(d)
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
        tf.addfile(ti)
    for f in files:
        ti = tarfile.TarInfo(f.path)
        ti.size, ti.mode, ti.mtime = f.length, 0o644, 0
        tf.addfile(ti, f.reader())


def _image(
    lay: Layout, name: str, layers: list[list[_File]], arch: str = "amd64"
) -> tuple[dict[str, Any], Image]:
    layer_descs: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    history: list[dict[str, str]] = []
    for i, files in enumerate(layers):
        desc, diff_id = lay.put_layer(files)
        layer_descs.append(desc)
        diff_ids.append(diff_id)
        history.append(
            {
                "created": "1970-01-01T00:00:00Z",
                "created_by": f"tests/support/images.py {name} #{i}",
            }
        )
    config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"test.image": name},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    cdesc = lay.put_json(config, OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cdesc,
        "layers": layer_descs,
        "annotations": {"org.opencontainers.image.title": name},
    }
    mdesc = lay.put_json(manifest, OCI_MANIFEST)
    image = Image(
        name=name,
        digest=mdesc["digest"],
        size=mdesc["size"],
        media_type=OCI_MANIFEST,
        config_digest=cdesc["digest"],
        layers=tuple(d["digest"] for d in layer_descs),
        layer_sizes=tuple(d["size"] for d in layer_descs),
        platform=f"linux/{arch}",
    )
    return mdesc, image


def _artifact(
    lay: Layout, name: str, artifact_type: str, payload: bytes, subject: Image
) -> tuple[dict[str, Any], Image]:
    empty = lay.put(b"{}")
    blob = lay.put(payload)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, **empty},
        "layers": [{"mediaType": artifact_type, **blob}],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
        "annotations": {"org.opencontainers.image.title": name},
    }
    desc = lay.put_json(manifest, OCI_MANIFEST)
    image = Image(
        name=name,
        digest=desc["digest"],
        size=desc["size"],
        media_type=OCI_MANIFEST,
        config_digest=empty["digest"],
        layers=(blob["digest"],),
        layer_sizes=(blob["size"],),
        artifact_type=artifact_type,
        subject=subject.digest,
    )
    return desc, image


def build_images(outdir: Path, big_mib: int = 105) -> ImageSet:
    """Write the layout into ``outdir`` (created) and return the expected images."""
    outdir.mkdir(parents=True, exist_ok=True)
    lay = Layout(outdir)
    result = ImageSet(outdir)

    def keep(tag: str, built: tuple[dict[str, Any], Image]) -> Image:
        desc, image = built
        lay.tag(desc, tag)
        result.images[tag] = image
        return image

    small = keep(
        "small",
        _image(
            lay,
            "small",
            [
                [
                    _File("data/small.bin", seed=1, size=MiB),
                    _text("etc/os-release", 'ID=wharftest\nNAME="small"\n'),
                ]
            ],
        ),
    )
    keep(
        "multilayer",
        _image(
            lay,
            "multilayer",
            [
                [_text("etc/hostname", "multilayer\n"), _text("etc/motd", "hello from wharf\n")],
                # half random, half zeros: the gzip size differs a lot from the tar size
                [_File("data/four.bin", seed=2, size=2 * MiB, zeros=2 * MiB)],
                [_File("data/big.bin", seed=3, size=big_mib * MiB)],
            ],
        ),
    )

    children: list[Image] = []
    platforms: list[dict[str, Any]] = []
    for arch, seed in (("amd64", 10), ("arm64", 11)):
        desc, child = _image(
            lay,
            "multi",
            [
                [
                    _text("data/arch.txt", f"{arch}\n"),
                    _File("data/blob.bin", seed=seed, size=256 * 1024),
                ]
            ],
            arch=arch,
        )
        children.append(child)
        platforms.append({**desc, "platform": {"architecture": arch, "os": "linux"}})
    index = lay.put_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms}, OCI_INDEX
    )
    lay.tag(index, "multi")
    result.images["multi"] = Image(
        name="multi",
        digest=index["digest"],
        size=index["size"],
        media_type=OCI_INDEX,
        children=tuple(children),
    )

    keep(
        "artifact",
        _artifact(
            lay, "artifact", SIGNATURE_TYPE, b'{"signed":"small","by":"wharf-tests"}\n', small
        ),
    )
    keep("sbom", _artifact(lay, "sbom", SBOM_TYPE, b'{"packages":[]}\n', small))

    lay.finish()
    return result


def _iter_summary(images: ImageSet) -> Iterator[tuple[str, str]]:
    for tag, image in images.images.items():
        yield tag, image.digest
        for child in image.children:
            yield f"{tag}/{child.platform}", child.digest


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    images = build_images(Path(argv[1]))
    print(json.dumps(dict(_iter_summary(images)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
