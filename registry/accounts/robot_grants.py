"""What the policy gives a project robot: its permissions as :class:`auth.policy.Grant` s
inside its project, carried by its :class:`~auth.policy.Identity`."""

from __future__ import annotations

from auth.policy import Grant, Identity
from registry.accounts.records import Robot


def grants(robot: Robot, default_project: str) -> tuple[Grant, ...]:
    """What the policy gives a project robot (its permissions, inside its project)."""
    assert robot.project is not None
    return tuple(
        Grant(
            robot.project,
            p.repositories,
            frozenset(p.actions),
            toplevel=robot.project == default_project,
        )
        for p in robot.permissions
    )


def identity(robot: Robot, default_project: str) -> Identity:
    return Identity(robot.name, grants=grants(robot, default_project))
