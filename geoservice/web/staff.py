"""The staff page (/staff): a kiosk's free places from a phone, for the staff on duty.

The template ``staff.html`` holds the heading and an empty list; ``static/js/staff.js`` reads each assigned point
from the API (``GET /api/v1/points/{id}``, with its ETag), shows its free places in large type with big buttons
(+1, −1, 满 through ``POST …/occupancy``, applied atomically on the server; 关闭/开放 and the notice through
``PATCH`` with ``If-Match``), and asks ``/api/v1/points/live`` every few seconds for changes others made. The page
carries only the ids of the user's points: everything else comes from the API, which checks every write itself.
Built for one hand on a 360 px phone in the sun: large type, high contrast, one column.
"""

from __future__ import annotations

from geoservice.accounts import User
from geoservice.config import Settings
from geoservice.web.maps import EDITOR_ROLES, render_page


def staff_page(settings: Settings, user: User) -> str:
    """The HTML of the staff page for ``user`` (logged in).

    Their assigned points; for an officer or a planner also a pointer to the city map, where they edit.
    """
    return render_page("staff.html", settings, page="staff", zoom=16, config={
        "point_ids": sorted(user.point_ids),
        "edits_on_map": user.role in EDITOR_ROLES,
    })
