"""Helpers the sortable list pages (customers, catalogue) share."""

from __future__ import annotations

from urllib.parse import urlencode


def sort_headers(sort: str, params: dict, columns: list[tuple]) -> list[dict]:
    """Column headers whose links toggle the sort, keeping the search and filter.

    `columns`: (label, sort key or None, css, whether the first click sorts descending).
    """
    headers = []
    for label, key, css, desc_first in columns:
        active = key is not None and sort.lstrip("-") == key
        desc = active and sort.startswith("-")
        if key is None:
            url = ""
        else:
            next_sort = (key if desc else "-" + key) if active else ("-" + key if desc_first else key)
            url = "?" + urlencode({k: v for k, v in {**params, "sort": next_sort}.items() if v})
        headers.append({"label": label, "url": url, "css": css, "active": active, "desc": desc})
    return headers
