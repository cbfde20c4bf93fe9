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
    "farmer": {
        "page_title": {"zh": "找最近的休息点 · 瓜农便民", "en": "Nearest rest point · for melon farmers"},
        "heading": {"zh": "瓜农便民 · 休息点", "en": "Rest points for farmers"},
        "language_switch_aria": {"zh": "Switch to English", "en": "切换到中文"},
        "find_button": {"zh": "找最近的休息点", "en": "Find the nearest rest point"},
        "intro": {"zh": "点上面的大按钮，或在地图上点一下您所在的地方。",
                  "en": "Press the big button, or tap the map where you are."},
        "locating": {"zh": "正在确定您的位置…", "en": "Finding where you are…"},
        "geo_failed": {"zh": "无法获取您的位置。请在地图上点一下您所在的地方。",
                       "en": "Your location is not available. Tap the map where you are."},
        "use_map_centre": {"zh": "用地图中心作为我的位置", "en": "Use the map centre as my spot"},
        "filters_label": {"zh": "筛选条件", "en": "Filters"},
        "filter_overnight": {"zh": "可过夜/有空位", "en": "Overnight, free places"},
        "filter_water": {"zh": "饮用水", "en": "Drinking water"},
        "filter_charging": {"zh": "手机充电", "en": "Phone charging"},
        "filter_toilet": {"zh": "厕所", "en": "Toilet"},
        "filter_open_now": {"zh": "现在开放", "en": "Open now"},
        "results_heading": {"zh": "离您最近的地方", "en": "Nearest places"},
        "searching": {"zh": "正在查找…", "en": "Searching…"},
        "found": {"zh": "找到 {n} 个地方，按步行距离排列。", "en": "{n} places found, nearest walk first."},
        "no_results": {"zh": "步行范围内没有符合条件的地方。请少选几个筛选条件。",
                       "en": "Nothing matching within walking range. Try fewer filters."},
        "walk": {"zh": "步行 {distance}，约 {minutes} 分钟", "en": "{distance} on foot, about {minutes} min"},
        "metres": {"zh": "{n} 米", "en": "{n} m"},
        "kilometres": {"zh": "{n} 公里", "en": "{n} km"},
        "free_places": {"zh": "空位 {free} / {capacity}", "en": "Free places {free} / {capacity}"},
        "open_now": {"zh": "现在开放", "en": "Open now"},
        "closed_now": {"zh": "现在关闭", "en": "Closed now"},
        "show_route": {"zh": "看路线", "en": "Show route"},
        "route_shown": {"zh": "路线已显示在地图上", "en": "Route shown on the map"},
        "call_point": {"zh": "打电话", "en": "Call"},
        "call_point_aria": {"zh": "打电话给 {name}：{phone}", "en": "Call {name}: {phone}"},
        "call_squad": {"zh": "打电话给{squad}", "en": "Call the squad {squad}"},
        "call_squad_aria": {"zh": "打电话给负责这里的{squad}：{phone}", "en": "Call {squad}, in charge here: {phone}"},
        "navigate_amap": {"zh": "导航（高德）", "en": "Navigate (Amap)"},
        "navigate_baidu": {"zh": "导航（百度）", "en": "Navigate (Baidu)"},
        "navigate_aria": {"zh": "用{app}导航到 {name}", "en": "Navigate to {name} with {app}"},
        "amap": {"zh": "高德地图", "en": "Amap"},
        "baidu": {"zh": "百度地图", "en": "Baidu Maps"},
        "your_spot": {"zh": "您的位置", "en": "Your spot"},
        "your_grid": {"zh": "您在：{grid}（{squad}负责）", "en": "You are in {grid} (squad: {squad})"},
        "no_grid": {"zh": "您的位置不在任何网格内。", "en": "Your spot is in no unit grid."},
        "map_label": {"zh": "地图。点一下地图设置您的位置。", "en": "Map. Tap it to set your spot."},
    },
    "planner": {},
}


def catalogue(page: str) -> dict[str, dict[str, str]]:
    """The messages a page needs: the common ones and its own, by language (``{"zh": {key: text}, "en": …}``)."""
    if page not in MESSAGES or page == "common":
        raise KeyError(f"no messages for page {page!r}; pages: {', '.join(p for p in MESSAGES if p != 'common')}")
    merged = {**MESSAGES["common"], **MESSAGES[page]}
    return {lang: {key: text[lang] for key, text in merged.items()} for lang in LANGUAGES}
