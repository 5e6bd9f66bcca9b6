"""The eviction plan (replicator/mirror_evict.py ``plan``): by age per upstream, then the
least recently pulled down to ``maxbytes``, shared blobs counted once."""

from __future__ import annotations

from registry.config import Settings
from replicator.mirror_evict import Policy, plan, policies
from replicator.mirror_evict_store import CachedManifest

DAY = 86400.0
NOW = 1_900_000_000.0


def cached(repo: str, name: str, days_ago: float, blobs: dict[str, int]) -> CachedManifest:
    return CachedManifest(repo, f"sha256:{name}", NOW - days_ago * DAY, 100, True, blobs)


def names(victims: list[tuple[CachedManifest, str]]) -> list[tuple[str, str]]:
    return [(m.digest.split(":")[1], reason) for m, reason in victims]


def test_age_per_upstream_and_the_default_for_repositories_no_mirror_serves() -> None:
    rules = [Policy("hub", maxage=2 * DAY), Policy("quay", maxage=30 * DAY)]
    found = [
        cached("hub/a", "hub-old", 3, {}),
        cached("hub/b", "hub-new", 1, {}),
        cached("quay/a", "quay-old", 10, {}),  # within quay's 30 days
        cached("gone/a", "gone-old", 8, {}),  # no mirror serves it: 7 days
        cached("gone/b", "gone-new", 6, {}),
    ]
    assert names(plan(found, rules, NOW)) == [("gone-old", "age"), ("hub-old", "age")]


def test_byte_bound_least_recently_pulled_first_shared_blobs_once() -> None:
    rules = [Policy("hub", maxbytes=100 + 100 + 1000 + 500 + 500)]  # b and c fit together
    found = [
        cached("hub/x", "a", 3, {"base": 1000, "a": 500}),
        cached("hub/x", "b", 2, {"base": 1000, "b": 500}),
        cached("hub/y", "c", 1, {"base": 1000, "c": 500}),
    ]
    # a b c hold 3 manifests + base once + 3 own layers = 300 + 1000 + 1500: a must go
    assert names(plan(found, rules, NOW)) == [("a", "bytes")]
    rules = [Policy("hub", maxbytes=1600)]  # only c fits
    assert names(plan(found, rules, NOW)) == [("a", "bytes"), ("b", "bytes")]


def test_aged_out_first_then_bytes() -> None:
    rules = [Policy("", maxage=5 * DAY, maxbytes=700)]  # the whole registry (proxy)
    found = [
        cached("lib/old", "old", 6, {"o": 500}),
        cached("lib/mid", "mid", 2, {"m": 500}),
        cached("lib/new", "new", 1, {"n": 500}),
    ]
    assert names(plan(found, rules, NOW)) == [("old", "age"), ("mid", "bytes")]


def test_policies_from_settings_longest_prefix_first() -> None:
    settings = Settings.model_validate(
        {
            "mirrors": [
                {"prefix": "hub", "remoteurl": "http://a", "maxage": "1h"},
                {"prefix": "hub/library/", "remoteurl": "http://b", "maxbytes": "1KiB"},
            ],
            "proxy": {"remoteurl": "http://c"},
        }
    )
    found = policies(settings)
    assert [(p.prefix, p.maxage, p.maxbytes) for p in found] == [
        ("hub/library", 7 * DAY, 1024),
        ("hub", 3600, None),
        ("", 7 * DAY, None),
    ]
