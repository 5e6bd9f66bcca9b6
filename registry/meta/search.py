"""The search index: tables and SQL (issue #8).

``search_tags`` holds one row per tag with what a result row shows (repository, tag,
digest, media and artifact type, size, push time), so a search is one indexed table plus
``IN`` filters. Facts read from an image at push time live per manifest:
``search_facts`` (config digest, platform, the JSON the image page shows),
``search_labels``, ``search_annotations`` and ``search_platforms`` (an index gets its
children's platforms and labels). :func:`apply_change` keeps them current inside every
push and delete transaction; :func:`backfill_tags` fills ``search_tags`` from ``tags``.
``ui_secrets`` keeps the key that signs the web UI's session cookies, shared by every
worker and node.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    true,
    tuple_,
    union,
)

from registry.meta import direct
from registry.meta import queries as q
from registry.meta.changes import Change
from registry.meta.tables import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    metadata,
    name_type,
    repositories,
    tags,
)

search_tags = Table(
    "search_tags",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tag", name_type(128), primary_key=True),
    Column("repository", name_type(255), nullable=False),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("digest", String(150), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("pushed_at", DateTime(timezone=True), nullable=False),
    Index("ix_search_tags_name", "repository", "tag"),
    Index("ix_search_tags_tag", "tag", "repository"),
    Index("ix_search_tags_pushed", "pushed_at", "repository", "tag"),
    Index("ix_search_tags_manifest", "manifest_id"),
)

search_facts = Table(
    "search_facts",
    metadata,
    Column(
        "manifest_id",
        Integer,
        ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("config_digest", String(150), nullable=True),
    Column("total_size", BigInteger, nullable=True),  # config and layers (of all children)
    Column("detail", Text, nullable=False),
)


def _pair_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column(
            "manifest_id",
            Integer,
            ForeignKey("manifests.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("key", String(255), primary_key=True),
        Column("value", Text, nullable=False),
        Index(f"ix_{name}_key", "key", "value", "manifest_id"),
    )


search_labels = _pair_table("search_labels")
search_annotations = _pair_table("search_annotations")

search_platforms = Table(
    "search_platforms",
    metadata,
    Column(
        "manifest_id",
        Integer,
        ForeignKey("manifests.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("os", String(64), primary_key=True),
    Column("architecture", String(64), primary_key=True),
    Column("variant", String(64), primary_key=True),  # '' when none
    Index("ix_search_platforms_platform", "os", "architecture", "variant", "manifest_id"),
)

ui_secrets = Table(
    "ui_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

MAX_VALUE = 500  # label and annotation values are cut to this many characters (indexed)
MAX_PAIRS = 256  # and at most this many of each are indexed per manifest


def _now() -> datetime:
    return datetime.now(UTC)


def _insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    direct.execute_many(conn, q.insert_ignore(table, conn.dialect.name), rows)


# -- writes (inside the push/delete transaction) ---------------------------


# Statements of the push path, built once: they run inside every manifest push.
@cache
def _manifest_row_query() -> Any:
    return (
        select(manifests, repositories.c.name.label("repository"))
        .select_from(repositories.join(manifests, manifests.c.repository_id == repositories.c.id))
        .where(repositories.c.name == bindparam("name"), manifests.c.digest == bindparam("digest"))
    )


@cache
def _delete_facts(table: Table) -> Any:
    return delete(table).where(table.c.manifest_id == bindparam("id"))


def _manifest_row(conn: Connection, repository: str, digest: str) -> Any:
    return conn.execute(_manifest_row_query(), {"name": repository, "digest": digest}).first()


def _pairs(manifest_id: int, raw: object) -> list[dict[str, Any]]:
    if not isinstance(raw, dict):
        return []
    items = [(str(k)[:255], str(v)[:MAX_VALUE]) for k, v in raw.items()][:MAX_PAIRS]
    return [{"manifest_id": manifest_id, "key": k, "value": v} for k, v in items]


def _platform_rows(manifest_id: int, raw: object) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for p in raw if isinstance(raw, list) else []:
        if not isinstance(p, dict):
            continue
        os_, arch = str(p.get("os") or ""), str(p.get("architecture") or "")
        if not os_ or not arch or "unknown" in (os_, arch):
            continue  # attestation manifests of buildx indexes say unknown/unknown
        variant = str(p.get("variant") or "")
        rows[(os_, arch, variant)] = {
            "manifest_id": manifest_id,
            "os": os_[:64],
            "architecture": arch[:64],
            "variant": variant[:64],
        }
    return list(rows.values())


MAX_TOTAL = 2**63 - 1


def _write_facts(
    conn: Connection, manifest_id: int, repo_id: int, details: dict[str, Any], again: bool
) -> None:
    """Store the facts of one manifest from ``details`` (see registry.search.facts):
    ``again`` replaces those stored; else facts stored already are kept (a manifest
    pushed again, same digest in the same repository, has the same facts)."""
    if again:
        for table in (search_facts, search_labels, search_annotations, search_platforms):
            conn.execute(_delete_facts(table), {"id": manifest_id})
    detail = details.get("detail") or {}
    children = details.get("children")
    total = details.get("total_size")
    if isinstance(children, list) and children:
        child_ids = select(manifests.c.id).where(
            manifests.c.repository_id == repo_id, manifests.c.digest.in_(children)
        )
        sizes = conn.execute(
            select(search_facts.c.total_size).where(
                search_facts.c.manifest_id.in_(child_ids), search_facts.c.total_size.isnot(None)
            )
        ).scalars()
        # added up here: a SQL sum() of sizes near the 64-bit limit overflows in the database
        known = [int(size) for size in sizes]
        total = sum(known) if known else None
    if total is not None and not 0 <= int(str(total)) <= MAX_TOTAL:
        total = None  # more than a signed 64-bit column holds: no total
    facts = {
        "manifest_id": manifest_id,
        "config_digest": details.get("config_digest"),
        "total_size": None if total is None else int(str(total)),
        "detail": json.dumps(detail),
    }
    if not direct.execute(conn, q.insert_ignore(search_facts, conn.dialect.name), facts):
        return  # stored already
    _insert_ignore(conn, search_labels, _pairs(manifest_id, details.get("labels")))
    _insert_ignore(conn, search_annotations, _pairs(manifest_id, details.get("annotations")))
    _insert_ignore(conn, search_platforms, _platform_rows(manifest_id, details.get("platforms")))
    if isinstance(children, list) and children:
        # an index: its children's labels and platforms, as stored when they were pushed
        for table, columns in (
            (search_platforms, ("os", "architecture", "variant")),
            (search_labels, ("key", "value")),
        ):
            found = conn.execute(
                select(*(table.c[c] for c in columns))
                .where(table.c.manifest_id.in_(child_ids))
                .distinct()
            ).all()
            rows = [
                {"manifest_id": manifest_id, **dict(zip(columns, r, strict=True))} for r in found
            ]
            _insert_ignore(conn, table, rows)


@dataclass(frozen=True, slots=True)
class _Pushed:
    """The manifest a push wrote, as the index needs it."""

    repository_id: int
    repository: str
    id: int
    digest: str
    media_type: str
    artifact_type: str | None
    size: int


@cache
def _upsert_tag(dialect: str) -> Any:
    stmt = q.upsert_module(dialect).insert(search_tags)
    return stmt.on_conflict_do_update(
        index_elements=[search_tags.c.repository_id, search_tags.c.tag],
        set_={
            c: stmt.excluded[c]
            for c in ("manifest_id", "digest", "media_type", "artifact_type", "size", "pushed_at")
        },
    )


def _pushed(conn: Connection, change: Change) -> _Pushed | None:
    new = change.manifest
    if new is not None and change.manifest_id is not None and change.repository_id is not None:
        return _Pushed(
            change.repository_id,
            change.repository,
            change.manifest_id,
            new.digest,
            new.media_type,
            new.artifact_type,
            new.size,
        )
    row = _manifest_row(conn, change.repository, change.digest)
    if row is None:
        return None
    return _Pushed(
        row.repository_id,
        row.repository,
        row.id,
        row.digest,
        row.media_type,
        row.artifact_type,
        row.size,
    )


def _tag_row(row: Any, tag: str, pushed_at: datetime) -> dict[str, Any]:
    return {
        "repository_id": row.repository_id,
        "tag": tag,
        "repository": row.repository,
        "manifest_id": row.id,
        "digest": row.digest,
        "media_type": row.media_type,
        "artifact_type": row.artifact_type,
        "size": row.size,
        "pushed_at": pushed_at,
    }


def apply_change(conn: Connection, change: Change) -> None:
    """Keep the index current with one change (the store calls this as a ChangeHook)."""
    if change.kind == "manifest" and change.action == "push":
        pushed = _pushed(conn, change)
        if pushed is None:
            return
        if "detail" in change.details:  # facts read at push (registry.search.facts)
            _write_facts(conn, pushed.id, pushed.repository_id, dict(change.details), False)
        if change.tag is not None:
            row = _tag_row(pushed, change.tag, _now())
            direct.execute(conn, _upsert_tag(conn.dialect.name), row)
    elif change.kind == "manifest" and change.action == "delete":
        # the manifest row is gone (ON DELETE CASCADE removes the rest on PostgreSQL and
        # on SQLite with foreign keys on); remove by repository and digest to be sure
        repo_id = conn.execute(q.repository_id(), {"name": change.repository}).scalar()
        conn.execute(
            delete(search_tags).where(
                search_tags.c.repository_id == repo_id, search_tags.c.digest == change.digest
            )
        )
    elif change.kind == "tag" and change.action == "delete":
        repo_id = conn.execute(q.repository_id(), {"name": change.repository}).scalar()
        conn.execute(
            delete(search_tags).where(
                search_tags.c.repository_id == repo_id, search_tags.c.tag == change.tag
            )
        )


def backfill_tags(conn: Connection) -> int:
    """Add a ``search_tags`` row for every tag that has none (tags pushed before the
    index existed, or while it was not maintained); returns how many were added."""
    missing = (
        select(
            tags.c.repository_id,
            tags.c.name,
            repositories.c.name,
            manifests.c.id,
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.artifact_type,
            manifests.c.size,
            tags.c.updated_at,
        )
        .select_from(
            tags.join(repositories, repositories.c.id == tags.c.repository_id).join(
                manifests, manifests.c.id == tags.c.manifest_id
            )
        )
        .where(
            ~select(search_tags.c.tag)
            .where(
                search_tags.c.repository_id == tags.c.repository_id,
                search_tags.c.tag == tags.c.name,
            )
            .exists()
        )
    )
    columns = [
        "repository_id",
        "tag",
        "repository",
        "manifest_id",
        "digest",
        "media_type",
        "artifact_type",
        "size",
        "pushed_at",
    ]
    result = conn.execute(insert(search_tags).from_select(columns, missing))
    return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class Unindexed:
    """A manifest without facts: what reindexing needs to compute them."""

    repository: str
    digest: str
    media_type: str


def unindexed_manifests(conn: Connection, limit: int) -> list[Unindexed]:
    """Manifests without a ``search_facts`` row, images before indexes."""
    is_index = manifests.c.media_type.in_(
        [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
    )
    rows = conn.execute(
        select(repositories.c.name, manifests.c.digest, manifests.c.media_type)
        .select_from(repositories.join(manifests, manifests.c.repository_id == repositories.c.id))
        .where(
            ~select(search_facts.c.manifest_id)
            .where(search_facts.c.manifest_id == manifests.c.id)
            .exists()
        )
        .order_by(is_index, manifests.c.id)
        .limit(limit)
    ).all()
    return [Unindexed(r[0], r[1], r[2]) for r in rows]


def write_facts(conn: Connection, repository: str, digest: str, details: dict[str, Any]) -> bool:
    """Store the facts of one manifest (reindexing); False if it is gone."""
    row = _manifest_row(conn, repository, digest)
    if row is None:
        return False
    _write_facts(conn, row.id, row.repository_id, details, True)
    return True


def session_secret(conn: Connection, new: str) -> str:
    """The web UI's signing key: ``new`` if none was stored yet, else the stored one."""
    _insert_ignore(conn, ui_secrets, [{"name": "session", "value": new}])
    value: str = conn.execute(
        select(ui_secrets.c.value).where(ui_secrets.c.name == "session")
    ).scalar_one()
    return value


# -- queries ---------------------------------------------------------------


SORT_KEYS = ("name", "tag", "pushed")


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """What a search asks for; every field is optional and they all must match."""

    name: str | None = None  # substring of the repository name, case-insensitive
    prefix: str | None = None  # the repository name starts with this
    repository: str | None = None  # exactly this repository
    tag: str | None = None
    digest: str | None = None  # manifest, config or layer digest
    labels: tuple[tuple[str, str | None], ...] = ()  # (key, value or None: any value)
    annotations: tuple[tuple[str, str | None], ...] = ()
    media_type: str | None = None
    artifact_type: str | None = None
    platform: tuple[str, str, str | None] | None = None  # os, architecture, variant
    pushed_after: datetime | None = None
    pushed_before: datetime | None = None
    repository_ids: Sequence[int] | None = None  # only these (None: all)
    repository_range: tuple[str, str] | None = None  # names between these (inclusive)


@dataclass(frozen=True, slots=True)
class TagRow:
    repository: str
    tag: str
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    pushed_at: datetime
    manifest_id: int


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _pair_ids(table: Table, key: str, value: str | None) -> Any:
    ids = select(table.c.manifest_id).where(table.c.key == key)
    return ids.where(table.c.value == value) if value is not None else ids


def _pair_exists(table: Table, key: str, value: str | None) -> Any:
    found = select(table.c.manifest_id).where(
        table.c.manifest_id == search_tags.c.manifest_id, table.c.key == key
    )
    if value is not None:
        found = found.where(table.c.value == value)
    return found.exists()


def _platform_ids(os_: str, arch: str, variant: str | None) -> Any:
    p = search_platforms.c
    ids = select(p.manifest_id).where(p.os == os_, p.architecture == arch)
    return ids.where(p.variant == variant) if variant is not None else ids


def _platform_exists(os_: str, arch: str, variant: str | None) -> Any:
    p = search_platforms.c
    found = select(p.manifest_id).where(
        p.manifest_id == search_tags.c.manifest_id, p.os == os_, p.architecture == arch
    )
    return (found.where(p.variant == variant) if variant is not None else found).exists()


def _digest_ids(digest: str) -> Any:
    """Manifests that are ``digest``, contain it (config or layer), or are an index of
    such a manifest."""
    direct = union(
        select(manifests.c.id).where(manifests.c.digest == digest),
        select(manifest_blobs.c.manifest_id).where(manifest_blobs.c.digest == digest),
    ).subquery()
    child_digests = select(manifests.c.digest).where(manifests.c.id.in_(select(direct.c.id)))
    parents = select(manifest_children.c.parent_id).where(
        manifest_children.c.child_digest.in_(child_digests)
    )
    return union(select(direct.c.id), parents)


def _name_ids(name: str) -> Any:
    pattern = f"%{_escape_like(name.lower())}%"
    return select(repositories.c.id).where(
        func.lower(repositories.c.name).like(pattern, escape="\\")
    )


def _sets(f: SearchFilter) -> list[Any]:
    """The filters that are sets, as statements selecting (about) one row per tag they
    match, to count how many tags each matches."""
    t = search_tags.c
    found: list[Any] = []
    for table, pairs in ((search_labels, f.labels), (search_annotations, f.annotations)):
        found += [_pair_ids(table, k, v) for k, v in pairs]
    if f.platform is not None:
        found.append(_platform_ids(*f.platform))
    if f.digest is not None:  # the manifests holding it as a blob: a cheap estimate
        found.append(
            select(manifest_blobs.c.manifest_id).where(manifest_blobs.c.digest == f.digest)
        )
    if f.name:
        found.append(select(t.manifest_id).where(t.repository_id.in_(_name_ids(f.name))))
    if f.repository_ids is not None:
        found.append(select(t.manifest_id).where(t.repository_id.in_(list(f.repository_ids))))
    return found


def _conditions(f: SearchFilter, scan: bool = False) -> list[Any]:
    """The WHERE clauses of ``f``.

    ``scan``: SQLite should walk the sort order's index and stop at the end of the page
    (right when many tags match): labels, annotations and platforms are then
    correlated ``EXISTS`` (one primary key lookup per row) instead of ``IN`` sets that
    SQLite would drive the query by, and ``+ 0`` hides the other sets' indexes.
    """
    t = search_tags.c
    mid = t.manifest_id + 0 if scan else t.manifest_id
    rid = t.repository_id + 0 if scan else t.repository_id
    where: list[Any] = []
    if f.repository is not None:
        where.append(t.repository == f.repository)
    if f.prefix:
        # names are ASCII below DEL (the name grammar): a range scan of the index
        where += [t.repository >= f.prefix, t.repository < f.prefix + "\x7f"]
    if f.name:
        where.append(rid.in_(_name_ids(f.name)))
    if f.tag is not None:
        where.append(t.tag == f.tag)
    if f.digest is not None:
        where.append(mid.in_(_digest_ids(f.digest)))
    for table, pairs in ((search_labels, f.labels), (search_annotations, f.annotations)):
        for key, value in pairs:
            cond = (
                _pair_exists(table, key, value) if scan else mid.in_(_pair_ids(table, key, value))
            )
            where.append(cond)
    if f.platform is not None:
        cond = _platform_exists(*f.platform) if scan else mid.in_(_platform_ids(*f.platform))
        where.append(cond)
    if f.media_type is not None:
        where.append(t.media_type == f.media_type)
    if f.artifact_type is not None:
        where.append(t.artifact_type == f.artifact_type)
    if f.pushed_after is not None:
        where.append(t.pushed_at >= _utc(f.pushed_after))
    if f.pushed_before is not None:
        where.append(t.pushed_at < _utc(f.pushed_before))
    if f.repository_ids is not None:
        where.append(rid.in_(list(f.repository_ids)))
    if f.repository_range is not None:
        # redundant with repository_ids, but a range of the name index: visible
        # repositories tend to share prefixes (team-a/*), and the walk starts there
        where += [t.repository >= f.repository_range[0], t.repository <= f.repository_range[1]]
    return where


def _sort_columns(sort: str) -> list[Any]:
    t = search_tags.c
    if sort == "tag":
        return [t.tag, t.repository]
    if sort == "pushed":
        return [t.pushed_at, t.repository, t.tag]
    return [t.repository, t.tag]


def cursor_values(row: TagRow, sort: str) -> list[str]:
    """The sort key of ``row`` as strings, for an opaque cursor."""
    values = {"name": row.repository, "tag": row.tag, "pushed": _utc(row.pushed_at).isoformat()}
    order = {"name": ["name", "tag"], "tag": ["tag", "name"], "pushed": ["pushed", "name", "tag"]}
    return [values[k] for k in order[sort]]


def _cursor_params(after: Sequence[str], sort: str) -> list[Any]:
    if sort == "pushed":
        return [_utc(datetime.fromisoformat(after[0])), *after[1:]]
    return list(after)


PROBE = 2000  # matching tags beyond which walking the sort order beats sorting them


def _many_match(conn: Connection, f: SearchFilter) -> bool:
    """Whether every set filter of ``f`` matches at least :data:`PROBE` tags (SQLite
    only; PostgreSQL's planner weighs this itself).

    SQLite drives a query with an ``IN`` filter by that filter's rows and sorts them
    all: fast for a few hundred, slow for 30,000. Walking the sort order's index
    instead stops after a page, but reads everything when almost nothing matches.
    Counting each set's tags up to PROBE (an index range each) picks the right one.
    """
    sets = _sets(f)
    if conn.dialect.name != "sqlite" or not sets:
        return False
    for ids in sets:
        found = ids.limit(PROBE).subquery()
        if conn.execute(select(func.count()).select_from(found)).scalar_one() < PROBE:
            return False
    return True


def search(
    conn: Connection,
    f: SearchFilter,
    sort: str,
    descending: bool,
    after: Sequence[str] | None,
    limit: int,
) -> list[TagRow]:
    """One page of tags matching ``f``, in ``sort`` order, after the cursor ``after``."""
    if conn.dialect.name == "postgresql":
        # asyncpg prepares statements; after five runs PostgreSQL may switch to a generic
        # plan, blind to how many rows each filter's values match (a 50x slower plan for
        # a label + platform + prefix search): plan each search for its values
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    columns = _sort_columns(sort)
    where = _conditions(f, scan=_many_match(conn, f))
    if after is not None:
        key, values = tuple_(*columns), tuple_(*map(literal, _cursor_params(after, sort)))
        where.append(key < values if descending else key > values)
    t = search_tags.c
    query = (
        select(
            t.repository,
            t.tag,
            t.digest,
            t.media_type,
            t.artifact_type,
            t.size,
            t.pushed_at,
            t.manifest_id,
        )
        .where(and_(true(), *where))
        .order_by(*(c.desc() if descending else c for c in columns))
        .limit(limit)
    )
    return [TagRow(*r) for r in conn.execute(query)]


def count(conn: Connection, f: SearchFilter) -> int:
    """How many tags match ``f`` in all."""
    query = select(func.count()).select_from(search_tags).where(and_(true(), *_conditions(f)))
    return int(conn.execute(query).scalar_one())


def total_sizes(conn: Connection, manifest_ids: Sequence[int]) -> dict[int, int]:
    """Config and layer bytes of each manifest that has facts."""
    if not manifest_ids:
        return {}
    f = search_facts.c
    rows = conn.execute(
        select(f.manifest_id, f.total_size).where(
            f.manifest_id.in_(list(set(manifest_ids))), f.total_size.is_not(None)
        )
    )
    return {r[0]: int(r[1]) for r in rows}


def platforms_of(conn: Connection, manifest_ids: Sequence[int]) -> dict[int, list[str]]:
    """``os/arch[/variant]`` of each manifest, sorted."""
    if not manifest_ids:
        return {}
    p = search_platforms.c
    rows = conn.execute(
        select(p.manifest_id, p.os, p.architecture, p.variant)
        .where(p.manifest_id.in_(list(set(manifest_ids))))
        .order_by(p.manifest_id, p.os, p.architecture, p.variant)
    )
    found: dict[int, list[str]] = {}
    for mid, os_, arch, variant in rows:
        found.setdefault(mid, []).append("/".join(x for x in (os_, arch, variant) if x))
    return found


def repository_ids(conn: Connection) -> list[tuple[int, str]]:
    """Every repository: (id, name)."""
    rows = conn.execute(select(repositories.c.id, repositories.c.name))
    return [(r[0], r[1]) for r in rows]


# -- browsing --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """One manifest with what the image page shows."""

    repository: str
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    annotations: dict[str, str]
    pushed_at: datetime
    subject: str | None
    tags: list[str]
    platforms: list[str]
    config_digest: str | None
    total_size: int | None
    detail: dict[str, Any]
    blobs: list[tuple[str, int]]  # digest, size: every blob it references (no order)
    referrers: list[dict[str, Any]]
    parents: list[str]  # digests of indexes in this repository that list it


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def manifest_info(
    conn: Connection, repository: str, tag: str | None, digest: str | None
) -> ManifestInfo | None:
    """The manifest a tag or digest names in ``repository``, with its facts; None if absent."""
    query = (
        select(manifests, repositories.c.name.label("repository"))
        .select_from(repositories.join(manifests, manifests.c.repository_id == repositories.c.id))
        .where(repositories.c.name == repository)
    )
    if tag is not None:
        query = query.join(tags, tags.c.manifest_id == manifests.c.id).where(tags.c.name == tag)
    else:
        query = query.where(manifests.c.digest == digest)
    row = conn.execute(query).first()
    if row is None:
        return None
    mid = row.id
    tag_names = list(
        conn.execute(
            select(tags.c.name).where(tags.c.manifest_id == mid).order_by(tags.c.name)
        ).scalars()
    )
    facts = conn.execute(select(search_facts).where(search_facts.c.manifest_id == mid)).first()
    blob_rows = conn.execute(
        select(manifest_blobs.c.digest, func.coalesce(blobs.c.size, 0))
        .select_from(manifest_blobs.outerjoin(blobs, blobs.c.digest == manifest_blobs.c.digest))
        .where(manifest_blobs.c.manifest_id == mid)
    ).all()
    referrer_rows = conn.execute(
        select(
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.artifact_type,
            manifests.c.size,
            manifests.c.annotations,
            manifests.c.created_at,
        )
        .where(
            manifests.c.repository_id == row.repository_id, manifests.c.subject_digest == row.digest
        )
        .order_by(manifests.c.created_at, manifests.c.digest)
    ).all()
    parents = list(
        conn.execute(
            select(manifests.c.digest)
            .select_from(
                manifest_children.join(manifests, manifests.c.id == manifest_children.c.parent_id)
            )
            .where(
                manifests.c.repository_id == row.repository_id,
                manifest_children.c.child_digest == row.digest,
            )
            .order_by(manifests.c.digest)
        ).scalars()
    )
    return ManifestInfo(
        repository=row.repository,
        digest=row.digest,
        media_type=row.media_type,
        artifact_type=row.artifact_type,
        size=row.size,
        annotations=_json(row.annotations),
        pushed_at=row.created_at,
        subject=row.subject_digest,
        tags=tag_names,
        platforms=platforms_of(conn, [mid]).get(mid, []),
        config_digest=facts.config_digest if facts is not None else None,
        total_size=facts.total_size if facts is not None else None,
        detail=_json(facts.detail) if facts is not None else {},
        blobs=[(r[0], int(r[1])) for r in blob_rows],
        referrers=[
            {
                "digest": r[0],
                "mediaType": r[1],
                "artifactType": r[2],
                "size": r[3],
                "annotations": _json(r[4]),
                "pushed": _utc(r[5]).isoformat(),
            }
            for r in referrer_rows
        ],
        parents=parents,
    )


def repository_summary(conn: Connection, repository: str) -> dict[str, int] | None:
    """Counts for a repository page; None if there is no such repository."""
    repo_id = conn.execute(q.repository_id(), {"name": repository}).scalar()
    if repo_id is None:
        return None
    n_tags = conn.execute(
        select(func.count()).select_from(tags).where(tags.c.repository_id == repo_id)
    ).scalar_one()
    n_manifests = conn.execute(
        select(func.count()).select_from(manifests).where(manifests.c.repository_id == repo_id)
    ).scalar_one()
    return {"tags": int(n_tags), "manifests": int(n_manifests)}


def index_counts(conn: Connection) -> dict[str, int]:
    """Row counts of the index, for the admin page."""
    tables = (
        ("indexed tags", search_tags),
        ("manifests with facts", search_facts),
        ("labels", search_labels),
        ("repositories", repositories),
        ("manifests", manifests),
        ("tags", tags),
        ("blobs", blobs),
    )
    return {
        name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        for name, table in tables
    }


Allowed = Callable[[str], bool]
