"""What a check found: one row of ``wharf check``'s table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "fail", "warn", "skip"]


@dataclass(frozen=True, slots=True)
class Result:
    check: str  # "config", "storage", "database", "ldap", ...
    target: str  # the key path or what was reached
    status: Status
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "target": self.target, "status": self.status,
                "detail": self.detail}  # fmt: skip


def table(results: list[Result]) -> str:
    """The results as aligned text columns."""
    rows = [("CHECK", "TARGET", "STATUS", "DETAIL")]
    rows += [(r.check, r.target, r.status.upper(), r.detail) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
    return "\n".join(lines)
