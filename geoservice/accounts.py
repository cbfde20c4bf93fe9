"""Who may change the city: accounts, roles, and the acting user every write carries.

Roles (stored on ``app_user.role``, migration 0003); the public has no account and reads everything:

- ``kiosk_staff`` — the points assigned to them (``user_point``): occupancy, status and notice only.
- ``officer`` — points inside their squad's grids: status, opening hours, season, amenities, capacity, occupancy
  and notice. Nothing outside those grids.
- ``planner`` — creates, moves, edits and deletes points; edits grids (geometry, officer, squad) and squads.
- ``admin`` — manages users and their roles. An admin edits no data (separation of duties: give a person two
  accounts when they need both).

Every write in :mod:`geoservice.editing` takes an :class:`Actor`: the user, and where the request came from (for
the audit log).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES: tuple[str, ...] = ("kiosk_staff", "officer", "planner", "admin")
"""The roles an account may have, least to most trusted in what they manage."""

ROLE_LABELS: dict[str, tuple[str, str]] = {
    "kiosk_staff": ("岗亭值守", "Kiosk staff"),
    "officer": ("中队队员", "Squad officer"),
    "planner": ("规划人员", "Planner"),
    "admin": ("管理员", "Administrator"),
}
"""zh-CN and English names of the roles, shown in every page's corner."""

LIVE_FIELDS: tuple[str, ...] = ("occupancy", "status", "notice")
"""The point fields kiosk staff may change on their own points."""

OFFICER_POINT_FIELDS: tuple[str, ...] = ("status", "opening_hours", "season", "amenities", "capacity", "occupancy",
                                         "notice")
"""The point fields an officer may change on points inside their squad's grids."""


@dataclass(frozen=True, kw_only=True)
class User:
    """An account as a request sees it (never its password hash)."""

    id: int
    username: str
    display_name: str
    role: str
    squad_name: str | None = None
    point_ids: frozenset[int] = frozenset()
    """For kiosk staff: the points assigned to them."""


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who makes a change and from where: what the audit log records."""

    user: User
    address: str | None = None
    user_agent: str | None = None
