"""Every piece of UI text of the pages, in zh-CN and English, in one place.

``MESSAGES[page][key]`` is ``{"zh": …, "en": …}``; ``page`` is ``common`` (shared by all pages), ``city``,
``farmer`` or ``planner``. Kind and amenity labels are not here: they live with their codes in
``geoservice.vocab``. Pages receive ``catalogue(page)`` as JSON and switch language without a reload.
"""

from __future__ import annotations

LANGUAGES = ("zh", "en")

MESSAGES: dict[str, dict[str, dict[str, str]]] = {
    "common": {
        "loading": {"zh": "加载中…", "en": "Loading…"},
        "language_switch": {"zh": "English", "en": "中文"},
        "error_network": {"zh": "无法连接服务器，请稍后再试", "en": "Cannot reach the server; please try again"},
    },
    "city": {},
    "farmer": {},
    "planner": {},
}


def catalogue(page: str) -> dict[str, dict[str, str]]:
    """The messages a page needs: the common ones and its own, by language (``{"zh": {key: text}, "en": …}``)."""
    if page not in MESSAGES or page == "common":
        raise KeyError(f"no messages for page {page!r}; pages: {', '.join(p for p in MESSAGES if p != 'common')}")
    merged = {**MESSAGES["common"], **MESSAGES[page]}
    return {lang: {key: text[lang] for key, text in merged.items()} for lang in LANGUAGES}
