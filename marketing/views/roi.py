"""The ROI dashboard: what the campaigns cost, earned and changed, refreshing itself while open (see marketing/roi.py)."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django_htmx.http import push_url

from accounts.access import viewer_required
from audiences.models import Audience

from .. import roi
from ..models import Ad, Campaign, Channel

# (column, heading, first click sorts descending)
COLUMNS = [("label", None, False), ("impressions", "Impressions", True), ("reach", "Reach", True),
           ("clicks", "Clicks", True), ("ctr", "CTR", True), ("streams", "Streams", True),
           ("conversions", "Conversions", True), ("revenue", "Revenue", True), ("spend", "Spend", True),
           ("cpa", "CPA", False), ("roas", "ROAS", True), ("roi", "ROI", True)]
INCREMENTAL_COLUMNS = [("incremental_conversions", "Incr. conversions", True), ("incremental_roi", "Incr. ROI", True)]
FIELDS = ("start", "end", "group", "campaign", "channel", "ad", "audience")
GOAL_RESPONSE = {"click": "clicks", "stream": "streams", "conversion": "conversions", "revenue": "purchases"}


@require_GET
@viewer_required
def roi_report(request):
    """The request lives in the URL; htmx (the filters, the sort, the 10-second poll) gets the results partial."""
    try:
        query = roi.check_query(request.GET)
    except roi.RoiError as exc:
        context = {"errors": exc.errors, "state": {k: request.GET.get(k, "") for k in (*FIELDS, "sort")}}
    else:
        context = {"errors": {}, "state": _state(query), **present(roi.report(query))}
    context.update(section="roi", groups=roi.GROUPS, fields=FIELDS, updated=timezone.localtime())
    if request.htmx:
        response = render(request, "marketing/roi.html#results", context)
        if request.htmx.trigger == "roi-filters" and not context["errors"]:  # the address bar without the empty fields
            return push_url(response, "?" + context["params"])
        return response
    context["choices"] = {
        "campaigns": Campaign.objects.order_by("name").values_list("pk", "name"),
        "channels": Channel.objects.order_by("name").values_list("pk", "name"),
        "ads": Ad.objects.order_by("campaign__name", "name").values_list("pk", "campaign__name", "name"),
        "audiences": Audience.objects.order_by("name").values_list("pk", "name")[:500],
    }
    return render(request, "marketing/roi.html", context, status=400 if context["errors"] else 200)


@require_GET
@viewer_required
def roi_csv(request):
    """One row per group of the same request, every measure, as CSV."""
    try:
        query = roi.check_query(request.GET)
    except roi.RoiError as exc:
        return HttpResponse(f"{exc}\n", status=400, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(roi.csv_lines(roi.report(query)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="roi-by-{query.group}-{query.start}-to-{query.end}.csv"'
    return response


def _state(query: roi.RoiQuery) -> dict:
    return {"start": query.start.isoformat(), "end": query.end.isoformat(), "group": query.group, "sort": query.sort,
            **{k: "" if getattr(query, k) is None else str(getattr(query, k)) for k in ("campaign", "channel", "ad", "audience")}}


# -- what the page shows -----------------------------------------------------------------------------------


def money(x: float | None) -> str:
    return "—" if x is None else f"{x:,.2f}"


def percent(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{round(100 * x, digits) + 0.0:,.{digits}f}\u00a0%"  # + 0.0: never "-0 %"


def count(x: float) -> str:
    return f"{round(x) or 0:,}"  # never "-0"


def interval(i: roi.Interval | None, form=count) -> dict | None:
    return None if i is None else {"estimate": form(i.estimate), "low": form(i.low), "high": form(i.high),
                                   "positive": i.low > 0, "negative": i.high < 0}


def present(report: roi.Report) -> dict:
    """The report as the page's cards, charts and table (formatted here, so the template only lays out)."""
    q, total, inc = report.query, report.total, report.incremental
    inc_roi = inc.roi if inc else None
    valued = any(x.measured and (x.treated.value or x.control.value) for x in report.lifts)
    if inc_roi is None:
        inc_roi_sub = "needs a control group"
    elif not valued:  # as in the lift table: responses without value say nothing of a return
        inc_roi, inc_roi_sub = None, "no revenue in treated or control yet"
    else:
        inc_roi_sub = f"95 % CI {percent(inc_roi.low, 0)} to {percent(inc_roi.high, 0)}"
    kpis = [
        {"label": "Spend", "value": money(total.spend), "icon": "wallet2", "sub": f"{total.impressions:,} impressions"},
        {"label": "Revenue", "value": money(total.revenue), "icon": "cash-coin", "sub": f"ROAS {total.roas:,.2f}" if total.roas is not None else "no spend yet"},
        {"label": "ROI", "value": percent(total.roi, 0), "icon": "graph-up-arrow", "sub": "attributed to the ads"},
        {"label": "Incremental ROI", "value": percent(inc_roi.estimate, 0) if inc_roi else "—", "icon": "bullseye",
         "sub": inc_roi_sub},
        {"label": "Conversions", "value": f"{total.conversions:,}", "icon": "check2-circle", "sub": f"{total.clicks:,} clicks"},
        {"label": "CPA", "value": money(total.cpa), "icon": "tag", "sub": "spend per conversion"},
    ]
    columns = COLUMNS + (INCREMENTAL_COLUMNS if q.group == "campaign" else [])
    headers = []
    for key, heading, desc_first in columns:
        active = q.sort.lstrip("-") == key
        desc = active and q.sort.startswith("-")
        following = (key if desc else "-" + key) if active else ("-" + key if desc_first else key)
        headers.append({"label": heading or roi.GROUPS[q.group], "url": "?" + q.params(sort=following),
                        "active": active, "desc": desc, "numeric": key != "label"})
    return {"report": report, "query": q, "params": q.params(), "unfiltered": "?" + q.params(campaign=None, channel=None, ad=None, audience=None),
            "kpis": kpis, "headers": headers,
            "rows": [_row(r, q) for r in report.rows], "total_cells": _cells(total),
            "lifts": [_lift(x) for x in report.lifts], "charts": _charts(report)}


def _cells(m: roi.Measures) -> list[str]:
    return [f"{m.impressions:,}", f"{m.reach:,}", f"{m.clicks:,}", percent(m.ctr, 2), f"{m.streams:,}",
            f"{m.conversions:,}", money(m.revenue), money(m.spend), money(m.cpa),
            "—" if m.roas is None else f"{m.roas:,.2f}", percent(m.roi, 0)]


def _row(row: roi.Row, q: roi.RoiQuery) -> dict:
    lift = row.lift if row.lift and (row.lift.treated.value or row.lift.control.value) else None
    return {"label": row.label, "key": row.key, "cells": _cells(row.measures),
            "drill": "?" + q.params(campaign=row.key, group="ad") if q.group == "campaign" and row.key else "",
            "conversions": interval(row.lift.incremental_conversions) if row.lift else None,
            "roi": interval(lift.incremental_roi, lambda v: percent(v, 0)) if lift else None}


def _lift(x: roi.Lift) -> dict:
    return {"name": x.name, "goal": GOAL_RESPONSE.get(x.goal, x.goal), "measured": x.measured, "reliable": x.reliable,
            "treated": x.treated, "control": x.control,
            "treated_rate": percent(x.treated.rate, 2), "control_rate": percent(x.control.rate, 2),
            "lift": interval(x.lift, lambda v: f"{100 * v:+,.2f} pp"),
            "conversions": interval(x.incremental_conversions),
            "valued": bool(x.treated.value or x.control.value),  # streams and clicks carry none: no revenue, no ROI to show
            "revenue": interval(x.incremental_revenue, money), "spend": money(x.spend),
            "roi": interval(x.incremental_roi, lambda v: percent(v, 0))}


def _charts(report: roi.Report) -> dict:
    labels = [d.strftime("%b %d") for d, _ in report.days]
    per_day = [m for _, m in report.days]
    measured = [x for x in report.lifts if x.measured]
    return {
        "money": {"type": "bar", "data": {"labels": labels, "datasets": [
            {"label": "Revenue", "data": [round(m.revenue, 2) for m in per_day], "color": "#1f9d8b"},
            {"label": "Spend", "data": [round(m.spend, 2) for m in per_day], "color": "#d6336c", "type": "line",
             "pointRadius": 3},
        ]}, "options": {"scales": {"y": {"beginAtZero": True}}}},
        "outcomes": {"type": "bar", "data": {"labels": labels, "datasets": [
            {"label": "Conversions", "data": [m.conversions for m in per_day], "color": "#5b2fd6"},
            {"label": "Streams", "data": [m.streams for m in per_day], "color": "#f08c00"},
            {"label": "Clicks", "data": [m.clicks for m in per_day], "color": "#2a5bd7"},
        ]}, "options": {"scales": {"y": {"beginAtZero": True}}}},
        # A floating bar from the interval's low to its high end, and a point at the estimate: error bars in Chart.js.
        "lift": {"type": "bar", "data": {"labels": [x.name for x in measured], "datasets": [
            {"label": "Lift, percentage points", "data": [round(100 * x.lift.estimate, 2) for x in measured],
             "type": "line", "showLine": False, "pointRadius": 7, "pointStyle": "rectRot", "color": "#14213d"},
            {"label": "95 % interval", "data": [[round(100 * x.lift.low, 2), round(100 * x.lift.high, 2)] for x in measured],
             "color": "#b197fc", "barPercentage": 0.35},
        ]}, "options": {"indexAxis": "x", "scales": {"y": {"title": {"display": True, "text": "percentage points"}}}}},
    }
