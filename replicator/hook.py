"""The on-push trigger: a change hook that notes pushed (and deleted) tags for the rules
that want them, in the same transaction as the push, for the scheduler to pick up.

The rules are the config's plus those stored through the API, read in the push's own
transaction: a rule added on any worker or node before the push commits sees it."""

from __future__ import annotations

from sqlalchemy import Connection

from registry.meta.changes import Change
from registry.meta.replication import add_pending, stored_rules
from replicator.rules import repository_selected, tag_selected
from replicator.ruleset import RuleSet


class OnPushHook:
    """``hook(conn, change)``: records a pending row per matching on-push rule."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def __call__(self, conn: Connection, change: Change) -> None:
        if change.kind == "blob" or change.tag is None:
            return  # blobs, and manifests pushed by digest, are replicated with their tag
        if change.action == "delete" and change.kind != "tag":
            return
        for rule in self.rules.merge(stored_rules(conn)).values():
            if not (rule.onpush and rule.direction == "push"):
                continue
            if change.action == "delete" and not rule.deletes:
                continue
            if repository_selected(rule, change.repository) and tag_selected(rule, change.tag):
                add_pending(conn, rule.name, change.repository, change.tag)
