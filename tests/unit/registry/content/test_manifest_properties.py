"""Property tests of the manifest parser and the search facts reader (issue #13): whatever
a client PUTs, the parser returns a manifest the database can hold or refuses it with a
4xx error, and reading facts from a manifest and its config never fails."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.content import mediatypes as mt
from registry.content.manifests import (
    MAX_DEPTH,
    MAX_SIZE,
    Descriptor,
    ParsedManifest,
    json_depth,
    load_json,
    parse_manifest,
)
from registry.errors import ManifestInvalid, RegistryError
from registry.search.facts import CONFIG_FIELDS, MAX_LIST, config_facts, manifest_details

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

D1, D2, D3 = ("sha256:" + c * 64 for c in "abc")
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"

# -- strategies ----------------------------------------------------------------------

KEYS = [
    "schemaVersion",
    "mediaType",
    "config",
    "layers",
    "manifests",
    "blobs",
    "subject",
    "annotations",
    "artifactType",
    "digest",
    "size",
    "urls",
    "platform",
    "os",
    "architecture",
    "variant",
    "Labels",
    "Cmd",
    "Env",
    "ExposedPorts",
    "created",
]
MEDIA_TYPES = [
    *sorted(mt.MANIFEST_TYPES | mt.FOREIGN_LAYERS),
    mt.DOCKER_SCHEMA1,
    mt.OCI_EMPTY,
    CONFIG_TYPE,
    LAYER_TYPE,
    "application/json",
    "",
    "x/" + "y" * 300,
]
EDGE_INTEGERS = [0, 1, -1, 2, MAX_SIZE, MAX_SIZE + 1, -MAX_SIZE - 1, 2**64, -(2**64), 10**30]
EDGE_STRINGS = [D1, "sha256:zz", "sha512:" + "0" * 128, "\ud800", "\U0001f600", "", "a/b"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(EDGE_INTEGERS),
    st.floats(),  # NaN and infinities too: json.dumps writes them, the parser must refuse
    st.text(max_size=20),
    st.sampled_from(EDGE_STRINGS + MEDIA_TYPES),
)
# any code point, lone surrogates (which only a JSON escape can carry) included
any_text = st.text(st.characters(categories=["Cs", "L", "N", "P"]), max_size=8)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


def descriptor(media_type: str, digest: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


VALID: list[dict[str, Any]] = [
    {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(CONFIG_TYPE, D1),
        "layers": [descriptor(LAYER_TYPE, D2), descriptor(LAYER_TYPE, D3, urls=["http://x"])],
        "subject": descriptor(mt.OCI_MANIFEST, D3),
        "annotations": {"org.example": "v"},
    },
    {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", D1),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", D2)],
    },
    {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            descriptor(mt.OCI_MANIFEST, D1, platform={"os": "linux", "architecture": "amd64"}),
            descriptor(mt.OCI_MANIFEST, D2, platform={"os": "linux", "architecture": "arm64"}),
        ],
        "artifactType": "application/x-test",
    },
    {
        "mediaType": mt.OCI_ARTIFACT_LEGACY,
        "artifactType": "application/x-sig",
        "blobs": [descriptor(LAYER_TYPE, D2)],
    },
]
CONTENT_TYPES = st.one_of(st.none(), st.sampled_from(MEDIA_TYPES), st.text(max_size=30))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with one to three values replaced, keys removed or added."""
    doc: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(json_values)
        else:
            parent.append(draw(json_values))
    return doc


def opening(depth: int, kinds: list[bool]) -> str:
    """``depth`` levels opened: arrays (False) and objects (True) as ``kinds`` says."""
    return "".join('{"a":' if kinds[i % len(kinds)] else "[" for i in range(depth))


def nested(depth: int, kinds: list[bool]) -> str:
    """JSON nested ``depth`` levels: arrays (False) and objects (True) as ``kinds`` says."""
    closing = "".join("}" if kinds[i % len(kinds)] else "]" for i in reversed(range(depth)))
    return opening(depth, kinds) + "1" + closing


# -- what a parsed manifest must be --------------------------------------------------


def _storable(text: str) -> None:
    assert len(text) <= 255
    text.encode()  # no lone surrogates: a database takes it


def _check_descriptor(d: Descriptor) -> None:
    assert isinstance(d.size, int) and not isinstance(d.size, bool)
    assert 0 <= d.size <= MAX_SIZE
    _storable(d.media_type)
    if d.artifact_type is not None:
        _storable(d.artifact_type)


def check_manifest(parsed: ParsedManifest) -> None:
    """What the registry stores of an accepted manifest fits the database."""
    assert parsed.media_type in mt.MANIFEST_TYPES
    for d in [*parsed.blobs, *parsed.manifests, *([parsed.subject] if parsed.subject else [])]:
        _check_descriptor(d)
    if parsed.artifact_type is not None:
        _storable(parsed.artifact_type)
    for k, v in parsed.annotations.items():
        assert isinstance(k, str) and isinstance(v, str)
        (k + v).encode()


def parse_or_refuse(body: bytes, content_type: str | None) -> ParsedManifest | None:
    """The manifest, or None when refused with a 4xx; anything else fails the test."""
    try:
        parsed = parse_manifest(body, content_type)
    except RegistryError as e:
        assert 400 <= e.http_status < 500, e
        return None
    assert isinstance(parsed, ParsedManifest)
    check_manifest(parsed)
    return parsed


def check_facts(facts: dict[str, Any]) -> None:
    """Facts are what the index stores: JSON text, strings where strings are expected."""
    json.dumps(facts, allow_nan=False, ensure_ascii=False).encode()
    assert set(facts) <= {"labels", "platform", "created", "author", *CONFIG_FIELDS}
    for mapping in (facts.get("labels", {}), facts.get("platform", {})):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
    for key in CONFIG_FIELDS:
        value = facts.get(key, "")
        assert isinstance(value, str) or (
            isinstance(value, list)
            and len(value) <= MAX_LIST
            and all(isinstance(v, str) for v in value)
        )


def check_details(parsed: ParsedManifest, config: bytes | None) -> None:
    details = manifest_details(parsed, config)
    # stored as JSON text and integer columns: no NaN, no lone surrogates, 64-bit sizes
    json.dumps(details, allow_nan=False, ensure_ascii=False).encode()
    total = details.get("total_size")
    assert total is None or (isinstance(total, int) and 0 <= total <= MAX_SIZE)
    detail = details["detail"]
    assert isinstance(detail, dict)
    image = detail.get("image")
    if image is not None:
        check_facts(image)


# -- the parser ----------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300), CONTENT_TYPES)
def test_any_bytes_parse_or_are_refused(body: bytes, content_type: str | None) -> None:
    parse_or_refuse(body, content_type)


@SETTINGS
@given(json_values, CONTENT_TYPES)
def test_any_json_parses_or_is_refused(doc: Any, content_type: str | None) -> None:
    parse_or_refuse(json.dumps(doc).encode(), content_type)


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8), CONTENT_TYPES)
def test_any_manifest_shaped_object_parses_or_is_refused(
    doc: dict[str, Any], content_type: str | None
) -> None:
    parse_or_refuse(json.dumps(doc).encode(), content_type)


@settings(SETTINGS, max_examples=300)
@given(mutated_manifests(), st.none() | st.sampled_from(sorted(mt.MANIFEST_TYPES)))
def test_mutated_manifests_parse_or_are_refused(
    doc: dict[str, Any], content_type: str | None
) -> None:
    parsed = parse_or_refuse(json.dumps(doc).encode(), content_type)
    if parsed is not None:
        check_details(parsed, None)


@SETTINGS
@given(mutated_manifests(), st.data())
def test_mutated_and_cut_bytes_parse_or_are_refused(doc: dict[str, Any], data: Any) -> None:
    body = json.dumps(doc).encode()
    at = data.draw(st.integers(0, len(body)))
    junk = data.draw(st.binary(max_size=5))
    parse_or_refuse(body[:at] + junk + body[at + len(junk) :], None)


@SETTINGS
@given(st.sampled_from(["config", "layer", "child", "subject", "blob"]), st.data())
def test_sizes_fit_a_signed_64_bit_integer(where: str, data: Any) -> None:
    """A size is taken exactly when it is an integer from 0 to 2^63-1."""
    size = data.draw(
        st.one_of(
            st.integers(-(2**70), 2**70),
            st.sampled_from(EDGE_INTEGERS),
            st.floats(),
            st.booleans(),
            st.text(max_size=5),
            st.none(),
        )
    )
    index = {"config": 0, "layer": 0, "child": 2, "subject": 0, "blob": 3}[where]
    doc = json.loads(json.dumps(VALID[index]))
    target = {
        "config": lambda: doc["config"],
        "layer": lambda: doc["layers"][0],
        "child": lambda: doc["manifests"][1],
        "subject": lambda: doc["subject"],
        "blob": lambda: doc["blobs"][0],
    }[where]()
    target["size"] = size
    fits = isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= MAX_SIZE
    parsed = parse_or_refuse(json.dumps(doc).encode(), None)
    assert (parsed is not None) == fits, (where, size)


@SETTINGS
@given(
    st.sampled_from(["annotation key", "annotation", "artifactType", "mediaType", "platform"]),
    any_text,
)
def test_strings_that_are_not_text_are_refused(where: str, text: str) -> None:
    doc = json.loads(json.dumps(VALID[2] if where == "platform" else VALID[0]))
    if where == "annotation key":
        doc["annotations"] = {text: "v"}
    elif where == "annotation":
        doc["annotations"] = {"k": text}
    elif where == "artifactType":
        doc["artifactType"] = text
    elif where == "mediaType":
        doc["layers"][0]["mediaType"] = "x/" + text
    else:
        doc["manifests"][0]["platform"]["os"] = text
    parsed = parse_or_refuse(json.dumps(doc).encode(), None)
    is_text = not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    assert (parsed is not None) == is_text
    if parsed is not None:
        check_details(parsed, None)


@SETTINGS
@given(st.dictionaries(any_text, json_values, max_size=4))
def test_platforms_of_an_index_are_stored_as_json(platform: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(VALID[2]))
    doc["manifests"][0]["platform"] = platform
    parsed = parse_or_refuse(json.dumps(doc).encode(), None)
    if parsed is not None:
        check_details(parsed, None)


@SETTINGS
@given(st.lists(st.integers(0, MAX_SIZE) | st.sampled_from([0, MAX_SIZE]), max_size=6))
def test_total_size_fits_or_is_left_out(sizes: list[int]) -> None:
    doc = json.loads(json.dumps(VALID[0]))
    doc["layers"] = [descriptor(LAYER_TYPE, D2, size) for size in sizes]
    parsed = parse_or_refuse(json.dumps(doc).encode(), None)
    assert parsed is not None
    details = manifest_details(parsed, None)
    total = sum(sizes) + 10  # and the config
    assert details.get("total_size") == (total if total <= MAX_SIZE else None)


@settings(SETTINGS, max_examples=60)
@given(
    st.integers(1, 3 * MAX_DEPTH),
    st.lists(st.booleans(), min_size=1, max_size=4),
    st.sampled_from(["alone", "field"]),
)
def test_nesting_is_refused_beyond_the_limit(depth: int, kinds: list[bool], where: str) -> None:
    """Up to MAX_DEPTH levels (counting the manifest object) parse; deeper is 400."""
    if where == "alone":
        text, levels = nested(depth, kinds), depth
    else:
        doc = dict(VALID[0], x="X")
        text = json.dumps(doc).replace('"X"', nested(depth, kinds))
        levels = max(depth + 1, json_depth(json.dumps(VALID[0])))
    assert json_depth(text) == levels
    try:
        parse_manifest(text.encode(), None)
    except ManifestInvalid as e:
        assert (levels > MAX_DEPTH) == ("nested" in e.message), e.message
    else:
        assert where == "field" and levels <= MAX_DEPTH


@settings(SETTINGS, max_examples=30)
@given(st.integers(MAX_DEPTH + 1, 200_000), st.lists(st.booleans(), min_size=1, max_size=3))
def test_very_deep_nesting_is_refused_not_a_recursion_error(depth: int, kinds: list[bool]) -> None:
    for text in (nested(depth, kinds), opening(depth, kinds)):  # closed or not
        try:
            parse_manifest(text.encode(), None)
        except ManifestInvalid as e:
            assert "nested" in e.message
        else:
            raise AssertionError("deep JSON parsed")


@SETTINGS
@given(json_values)
def test_depth_scan_agrees_with_the_parsed_value(doc: Any) -> None:
    def depth(value: Any) -> int:
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        if isinstance(value, list):
            return 1 + max((depth(v) for v in value), default=0)
        return 0

    text = json.dumps(doc)
    assert json_depth(text) == depth(doc)
    assert json.dumps(load_json(text, strict=False)) == text


# -- the facts reader ----------------------------------------------------------------

CONFIG: dict[str, Any] = {
    "architecture": "arm64",
    "os": "linux",
    "variant": "v8",
    "created": "2026-11-01T10:00:00Z",
    "config": {
        "Labels": {"tier": "web"},
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--serve"],
        "Env": ["A=1"],
        "ExposedPorts": {"80/tcp": {}},
        "WorkingDir": "/srv",
    },
    "rootfs": {"type": "layers", "diff_ids": [D1]},
    "history": [{"created_by": "RUN x"}],
}


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(CONFIG))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = draw(json_values)
    return doc


@SETTINGS
@given(st.binary(max_size=300))
def test_facts_of_any_bytes(raw: bytes) -> None:
    check_facts(config_facts(raw))


@SETTINGS
@given(json_values)
def test_facts_of_any_json(doc: Any) -> None:
    facts = config_facts(json.dumps(doc).encode())
    check_facts(facts)
    if not isinstance(doc, dict):
        assert facts == {}


@SETTINGS
@given(
    st.dictionaries(any_text, any_text | json_values, max_size=4),
    st.dictionaries(st.sampled_from(["os", "architecture", "variant", "created"]), any_text),
)
def test_facts_are_text(labels: dict[str, Any], top: dict[str, str]) -> None:
    """Lone surrogates in a config do not reach the index (a database refuses them)."""
    doc = dict(CONFIG, **top, config=dict(CONFIG["config"], Labels=labels, Cmd=list(labels)))
    facts = config_facts(json.dumps(doc).encode())
    check_facts(facts)
    assert len(facts["labels"]) == len({k for k, v in labels.items() if isinstance(v, str)})


@settings(SETTINGS, max_examples=300)
@given(mutated_configs())
def test_facts_of_mutated_configs(doc: dict[str, Any]) -> None:
    facts = config_facts(json.dumps(doc).encode())
    check_facts(facts)
    # what the mutations left alone is still read
    if doc.get("os") == "linux" and doc.get("architecture") == "arm64":
        assert facts["platform"]["os"] == "linux"
    cfg = doc.get("config")
    labels = cfg.get("Labels") if isinstance(cfg, dict) else None
    if isinstance(labels, dict) and labels.get("tier") == "web":
        assert facts["labels"]["tier"] == "web"


@SETTINGS
@given(
    st.integers(0, 5000),
    st.lists(st.booleans(), min_size=1, max_size=3),
    st.sampled_from(["history", "rootfs", "config"]),
)
def test_facts_of_deeply_nested_configs(depth: int, kinds: list[bool], where: str) -> None:
    doc = dict(CONFIG, **{where: "X"})
    raw = json.dumps(doc).replace('"X"', nested(depth, kinds)).encode()
    facts = config_facts(raw)
    check_facts(facts)
    if depth + 1 > MAX_DEPTH:
        assert facts == {}  # too deep to read at all
    else:
        assert facts["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}


@settings(SETTINGS, max_examples=200)
@given(mutated_manifests(), st.one_of(st.none(), st.binary(max_size=100), mutated_configs()))
def test_details_of_any_accepted_manifest(doc: dict[str, Any], config: Any) -> None:
    parsed = parse_or_refuse(json.dumps(doc).encode(), None)
    if parsed is None:
        return
    raw = json.dumps(config).encode() if isinstance(config, dict) else config
    check_details(parsed, raw)
