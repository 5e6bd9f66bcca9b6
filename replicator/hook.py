"""The on-push trigger: a change hook that notes pushed (and deleted) tags for the rules
that want them, in the same transaction as the push, for the scheduler to pick up.

A manifest deleted by digest is noted too (for rules with ``deletes``), with the digest
in place of the tag: the run then deletes that manifest by digest at the target (with
whatever tags point at it there) unless the source has it again. It counts when the
manifest lost a tag the rule selects, or, untagged, when the rule takes every tag.

The rules are the config's plus those stored through the API, read in the push's own
transaction: a rule added on any worker or node before the push commits sees it."""

from __future__ import annotations

from sqlalchemy import Connection

from registry.config import ReplicationRuleSettings
from registry.meta.changes import Change
from replicator.rules import repository_selected, tag_selected
from replicator.ruleset import RuleSet
from replicator.store import add_pending, stored_rules


def _manifest_selected(rule: ReplicationRuleSettings, change: Change) -> bool:
    """A manifest deleted by digest was replicated by ``rule`` (as far as one can tell)."""
    untagged = change.details.get("untagged")
    tags = [t for t in untagged if isinstance(t, str)] if isinstance(untagged, list) else []
    if tags:
        return any(tag_selected(rule, t) for t in tags)
    return not rule.tags


class OnPushHook:
    """``hook(conn, change)``: records a pending row per matching on-push rule."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def __call__(self, conn: Connection, change: Change) -> None:
        if change.kind == "blob":
            return  # blobs are replicated with the manifests that reference them
        by_digest = change.action == "delete" and change.kind == "manifest"
        if change.tag is None and not by_digest:
            return  # manifests pushed by digest are replicated with their tag
        if change.action == "delete" and change.kind not in ("tag", "manifest"):
            return
        for rule in self.rules.merge(stored_rules(conn)).values():
            if not (rule.onpush and rule.direction == "push"):
                continue
            if change.action == "delete" and not rule.deletes:
                continue
            if not repository_selected(rule, change.repository):
                continue
            if by_digest:
                if _manifest_selected(rule, change):
                    add_pending(conn, rule.name, change.repository, change.digest)
            elif change.tag is not None and tag_selected(rule, change.tag):
                add_pending(conn, rule.name, change.repository, change.tag)
