"""The retention decision (registry/retention/decide.py) and the rules' validation."""

from __future__ import annotations

from registry.retention.decide import (
    DAY,
    ManifestRow,
    RepositoryRows,
    TagRow,
    decide,
    selecting,
)
from registry.retention.rules import Rule, rule_from_json, rules_from_json

NOW = 1_800_000_000.0


def repo(
    *tags: tuple[str, int, float, float | None], manifests: list[ManifestRow]
) -> RepositoryRows:
    return RepositoryRows("team/app", "app", [TagRow(n, m, p, q) for n, m, p, q in tags], manifests)


def images(n: int) -> list[ManifestRow]:
    return [ManifestRow(i, f"sha256:{i:064x}") for i in range(1, n + 1)]


def gone(decision: object) -> set[str]:
    return set(decision.removed_tags)  # type: ignore[attr-defined]


def test_latest_pushed_keeps_the_n_newest() -> None:
    r = repo(
        ("v1", 1, NOW - 3 * DAY, None),
        ("v2", 2, NOW - 2 * DAY, None),
        ("v3", 3, NOW - 1 * DAY, None),
        manifests=images(3),
    )
    d = decide(r, [Rule("latest_pushed", count=2)], NOW)
    assert gone(d) == {"v1"}
    assert [m.id for m in d.manifests] == [1]
    assert d.untag == ()


def test_latest_pulled_ranks_only_pulled_tags() -> None:
    r = repo(
        ("a", 1, NOW, NOW - 5 * DAY),
        ("b", 2, NOW, NOW - 1 * DAY),
        ("c", 3, NOW, None),
        manifests=images(3),
    )
    assert gone(decide(r, [Rule("latest_pulled", count=1)], NOW)) == {"a", "c"}
    assert gone(decide(r, [Rule("latest_pulled", count=5)], NOW)) == {"c"}


def test_within_periods() -> None:
    r = repo(
        ("old", 1, NOW - 10 * DAY, NOW - 1 * DAY),
        ("new", 2, NOW - 1 * DAY, None),
        manifests=images(2),
    )
    assert gone(decide(r, [Rule("pushed_within", days=7)], NOW)) == {"old"}
    assert gone(decide(r, [Rule("pulled_within", days=7)], NOW)) == {"new"}
    assert (
        gone(decide(r, [Rule("pushed_within", days=7), Rule("pulled_within", days=7)], NOW))
        == set()
    )


def test_tag_patterns_and_a_tag_no_rule_selects() -> None:
    r = repo(
        ("release-1", 1, NOW - 9 * DAY, None),
        ("dev-1", 2, NOW - 9 * DAY, None),
        ("release-rc", 3, NOW - 9 * DAY, None),
        manifests=images(3),
    )
    rule = Rule("always", tags=("release-*",), exclude_tags=("re:.*-rc",))
    assert gone(decide(r, [rule], NOW)) == {"dev-1", "release-rc"}


def test_no_rule_selecting_the_repository_removes_nothing() -> None:
    r = repo(("v1", 1, NOW, None), manifests=images(1))
    rules = [Rule("latest_pushed", count=0, repositories=("other",))]
    assert selecting(rules, "app") == []
    assert decide(r, selecting(rules, "app"), NOW).empty


def test_a_manifest_with_a_kept_tag_stays_its_other_tag_goes() -> None:
    r = repo(("keep-1", 1, NOW, None), ("tmp", 1, NOW, None), manifests=images(1))
    d = decide(r, [Rule("always", tags=("keep-*",))], NOW)
    assert d.untag == ("tmp",) and d.manifests == ()


def test_protected_tags_stay() -> None:
    r = repo(("v1", 1, NOW - 9 * DAY, None), manifests=images(1))
    assert decide(r, [Rule("pushed_within", days=1)], NOW, {"v1"}).empty


def test_referrers_go_with_their_subject_and_stay_with_it() -> None:
    subject = ManifestRow(1, "sha256:" + "a" * 64)
    signature = ManifestRow(2, "sha256:" + "b" * 64, subject=subject.digest)
    sbom_of_signature = ManifestRow(3, "sha256:" + "c" * 64, subject=signature.digest)
    other = ManifestRow(4, "sha256:" + "d" * 64)
    manifests = [subject, signature, sbom_of_signature, other]
    # a tagged referrer (cosign's sha256-....sig) whose subject goes, goes too
    r = repo(
        ("old", 1, NOW - 9 * DAY, None),
        ("sig", 2, NOW, None),
        ("new", 4, NOW, None),
        manifests=manifests,
    )
    d = decide(r, [Rule("pushed_within", days=1)], NOW)
    assert [m.id for m in d.manifests] == [3, 2, 1]  # referrers first
    assert gone(d) == {"old", "sig"}
    kept = repo(("old", 1, NOW, None), manifests=manifests[:3])
    assert decide(kept, [Rule("always", untagged="drop")], NOW).empty


def test_index_children_stay_with_the_index_and_go_with_it() -> None:
    a, b = ManifestRow(1, "sha256:" + "1" * 64), ManifestRow(2, "sha256:" + "2" * 64)
    index = ManifestRow(3, "sha256:" + "3" * 64, children=(a.digest, b.digest))
    stays = repo(("multi", 3, NOW, None), manifests=[a, b, index])
    assert decide(stays, [Rule("always", untagged="drop")], NOW).empty
    goes = repo(("multi", 3, NOW - 9 * DAY, None), manifests=[a, b, index])
    d = decide(goes, [Rule("pushed_within", days=1)], NOW)
    assert [m.id for m in d.manifests] == [3, 1, 2]  # the index first


def test_untagged_keep_or_drop() -> None:
    r = repo(("v1", 1, NOW, None), manifests=images(2))  # manifest 2 has no tag
    assert decide(r, [Rule("always")], NOW).empty
    d = decide(r, [Rule("always", untagged="drop")], NOW)
    assert [m.id for m in d.manifests] == [2] and d.removed_tags == ()
    # any rule keeping untagged manifests keeps them
    assert decide(r, [Rule("always", untagged="drop"), Rule("always")], NOW).empty


def test_rules_validation_names_every_problem() -> None:
    rule, problems = rule_from_json(
        {"kind": "latest_pushed", "days": 3, "untagged": "maybe", "tags": ["re:("], "x": 1}
    )
    assert rule is None
    assert set(problems) == {"count", "days", "untagged", "tags", "x"}
    rules, problems2 = rules_from_json([{"kind": "always"}, {"kind": "nope"}])
    assert len(rules) == 1 and set(problems2) == {"1"}
    assert rules_from_json({"kind": "always"})[1] == {"rules": "must be a list of rules"}
    good, none = rule_from_json({"kind": "pulled_within", "days": 1.5, "repositories": ["a/*"]})
    assert none == {} and good is not None and good.days == 1.5
    assert good.selects_repository("a/b/c") and not good.selects_repository("b")
