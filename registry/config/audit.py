"""``audit``: the audit log (issue #16): docs/audit.md."""

from __future__ import annotations

from pydantic import field_validator

from registry.config.base import Duration, _Section, duration


class AuditSettings(_Section):
    """``enabled``: record pushes, tag moves, deletes, logins, token grants, pulls and
    administrative changes; ``retention``: how long a record is kept (older ones are
    purged every ``purgeinterval``); ``pulls``: record manifest pulls (batched)."""

    enabled: bool = True
    retention: Duration = duration("2160h")  # 90 days
    purgeinterval: Duration = duration("1h")
    pulls: bool = True

    @field_validator("retention", "purgeinterval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value
