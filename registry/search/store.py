"""The search API's SQL: a :class:`SearchFilter` compiled to one query of
``search_tags`` (with the facts tables as ``IN`` sets or correlated ``EXISTS``), cursors
in each sort order, and the sizes and platforms a result row shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    func,
    literal,
    select,
    true,
    tuple_,
    union,
)

from registry.meta.tables import manifest_blobs, manifest_children, manifests, repositories
from registry.search.tables import (
    search_annotations,
    search_facts,
    search_labels,
    search_platforms,
    search_tags,
)

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


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC time (SQLite hands naive ones back)."""
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
        where.append(t.pushed_at >= utc(f.pushed_after))
    if f.pushed_before is not None:
        where.append(t.pushed_at < utc(f.pushed_before))
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
    values = {"name": row.repository, "tag": row.tag, "pushed": utc(row.pushed_at).isoformat()}
    order = {"name": ["name", "tag"], "tag": ["tag", "name"], "pushed": ["pushed", "name", "tag"]}
    return [values[k] for k in order[sort]]


def _cursor_params(after: Sequence[str], sort: str) -> list[Any]:
    if sort == "pushed":
        return [utc(datetime.fromisoformat(after[0])), *after[1:]]
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


def page(
    conn: Connection,
    f: SearchFilter,
    sort: str,
    descending: bool,
    after: Sequence[str] | None,
    limit: int,
) -> tuple[list[TagRow], dict[int, list[str]], dict[int, int]]:
    """Up to ``limit`` + 1 rows of :func:`search` (one more says there is a next page),
    with the platforms and sizes of the first ``limit``."""
    rows = search(conn, f, sort, descending, after, limit + 1)
    ids = [r.manifest_id for r in rows[:limit]]
    return rows, platforms_of(conn, ids), total_sizes(conn, ids)
