"""Who is in an audience compared with the whole base: shares and an index (100 = like the base)."""

from __future__ import annotations

from django.db.models import Case, CharField, Count, F, QuerySet, Value, When
from django.utils import timezone

from .models import Customer, Gender, Segment

AGE_BANDS = [(None, 17, "under 18"), (18, 24, "18–24"), (25, 34, "25–34"), (35, 44, "35–44"), (45, 54, "45–54"), (55, None, "55+")]


def _age_band():
    year = timezone.now().year
    whens = []
    for low, high, label in AGE_BANDS:
        condition = {}
        if low is not None:
            condition["birth_year__lte"] = year - low
        if high is not None:
            condition["birth_year__gte"] = year - high
        whens.append(When(**condition, then=Value(label)))
    return Case(*whens, default=Value("unknown"), output_field=CharField())


NATURAL = "natural"
DIMENSIONS = [
    # (key, title, expression or field, fixed order of categories, NATURAL for the base's in sorted order, or None for the
    # audience's top ones)
    ("age", "Age", _age_band, [label for _, _, label in AGE_BANDS] + ["unknown"]),
    ("gender", "Gender", "gender", None),
    ("region", "Region", "region", None),
    ("city_tier", "City tier", "city_tier", NATURAL),
    ("segment", "Value segment", "persona__segment", [s.value for s in Segment]),
    ("top_genre", "Top genre", "persona__top_genre", None),
    ("top_artist", "Top artist", "persona__top_artist", None),
]
GENDER_LABELS = dict(Gender.choices)


def _counts(customers: QuerySet, field) -> dict:
    grouped = customers.annotate(dim=field() if callable(field) else F(field))
    return {row["dim"]: row["n"] for row in grouped.values("dim").annotate(n=Count("id")).order_by()}


def compare(members: QuerySet, *, top: int = 8) -> list[dict]:
    """Per dimension: category, audience share, base share and index, as rows and a chart config."""
    size = members.count()
    base = Customer.objects.all()
    total = base.count()
    result = []
    for key, title, field, order in DIMENSIONS:
        inside, everyone = _counts(members, field), _counts(base, field)
        if order is None:
            order = [k for k, _ in sorted(inside.items(), key=lambda kv: -kv[1]) if k not in (None, "")][:top]
        elif order == NATURAL:  # an ordinal scale reads in its own order: tier 1, 2, 3, 4
            order = sorted(k for k in everyone if k not in (None, ""))
        rows = []
        for category in order:
            a = inside.get(category, 0) / size if size else 0.0
            b = everyone.get(category, 0) / total if total else 0.0
            label = GENDER_LABELS.get(category, category) if key == "gender" else category
            rows.append({"label": str(label if label not in (None, "") else "unknown"), "audience": 100 * a, "base": 100 * b,
                         "index": round(100 * a / b) if b else None})
        chart = {
            "type": "bar",
            "data": {"labels": [r["label"] for r in rows],
                     "datasets": [{"label": "Index (100 = like the whole base)", "data": [r["index"] or 0 for r in rows]}]},
            "options": {"indexAxis": "y", "scales": {"x": {"beginAtZero": True, "suggestedMax": 200}}},
        }
        result.append({"key": key, "chart_id": f"insight-{key}", "title": title, "rows": rows, "chart": chart})
    return result
