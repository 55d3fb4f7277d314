"""Catalogue pages: the items, and per item its plays, similar items, audio analyses and release forecast."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, F, Q
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.access import viewer_required, writer_required
from ml.models import Job

from .. import audio_jobs
from ..access import get_item_for_user
from ..models import Activity, ActivityKind, AudioAnalysis, Item, ItemKind, SimilarItems, StreamForecast
from .tables import sort_headers

FORECAST_DAYS = 60
DESCRIPTOR_ROWS = [
    ("tempo_bpm", "Tempo", "bpm", 0),
    ("loudness_lufs", "Integrated loudness", "LUFS", 1),
    ("loudness_dbfs", "RMS level", "dBFS", 1),
    ("loudness_range_lu", "Loudness range", "LU", 1),
    ("crest_factor_db", "Crest factor", "dB", 1),
    ("spectral_centroid_hz", "Spectral centroid", "Hz", 0),
    ("spectral_bandwidth_hz", "Spectral bandwidth", "Hz", 0),
    ("spectral_rolloff_hz", "Spectral roll-off (85 %)", "Hz", 0),
    ("spectral_flatness", "Spectral flatness", "", 4),
    ("zero_crossing_rate", "Zero-crossing rate", "", 4),
    ("onset_rate", "Onsets", "per s", 2),
]


class AudioUploadForm(forms.Form):
    file = forms.FileField(label="Recording", help_text="wav, ogg, flac or mp3, up to 50 MB",
                           widget=forms.ClearableFileInput(attrs={"class": "form-control", "accept": ".wav,.ogg,.flac,.mp3"}))
    offset = forms.FloatField(label="Chorus starts at (seconds)", required=False, min_value=0,
                              help_text="Leave empty to let the job find the chorus",
                              widget=forms.NumberInput(attrs={"class": "form-control", "step": "0.1"}))

    def clean_file(self):
        upload = self.cleaned_data["file"]
        audio_jobs.check_upload(upload)
        return upload


CATALOGUE_COLUMNS = [
    # (label, sort key or None, css, first click sorts descending)
    ("Title", "title", "", False),
    ("Artist", "artist", "", False),
    ("Kind", "kind", "", False),
    ("Genres", None, "", False),
    ("Released", "released", "", True),
    ("Plays 30d", "plays", "text-end", True),
]
CATALOGUE_SORTS = {"title": "title", "artist": "artist", "kind": "kind", "released": "release_date", "plays": "plays_sort"}


def catalogue_kpis() -> dict:
    totals = Item.objects.aggregate(items=Count("id"), tracks=Count("id", filter=Q(kind=ItemKind.TRACK)))
    return {**totals, "analysed": AudioAnalysis.objects.filter(status=AudioAnalysis.Status.SUCCEEDED).count(),
            "forecast_items": StreamForecast.objects.values("item").distinct().count()}


@require_GET
@viewer_required
def catalogue_list(request):
    q = request.GET.get("q", "").strip()
    kind = request.GET.get("kind", "")
    sort = request.GET.get("sort", "title")
    if sort.lstrip("-") not in CATALOGUE_SORTS:
        sort = "title"
    items = Item.objects.all()
    if q:
        items = items.filter(Q(title__icontains=q) | Q(artist__icontains=q) | Q(external_id__iexact=q))
    if kind in ItemKind.values:
        items = items.filter(kind=kind)
    since = timezone.now() - timedelta(days=30)
    field = CATALOGUE_SORTS[sort.lstrip("-")]
    window = Activity.objects.filter(kind=ActivityKind.PLAY, occurred_at__gte=since).order_by()
    if field == "plays_sort":
        # The most played first: every item's plays in the window from one grouped scan of the covering
        # time index, then the items ranked here (a per-item count would probe the index once per item).
        plays = dict(window.filter(item__isnull=False).values_list("item_id").annotate(n=Count("id")))
        tracks = Item.objects.filter(pk__in=list(plays), kind=ItemKind.TRACK).values_list(*TRACK_KEYS)
        total = _with_tracks(plays, tracks)
        sign = -1 if sort.startswith("-") else 1
        ranked = sorted(items.values_list("pk", "title", "kind", "external_id"),
                        key=lambda row: (sign * total(*row), row[1], row[0]))
        page = Paginator([row[0] for row in ranked], 25).get_page(request.GET.get("page"))
        found = Item.objects.in_bulk(page.object_list)
        page.object_list = [found[pk] for pk in page.object_list if pk in found]
    else:
        ordering = F(field).desc(nulls_last=True) if sort.startswith("-") else F(field).asc(nulls_last=True)
        page = Paginator(items.order_by(ordering, "title", "id"), 25).get_page(request.GET.get("page"))
        # The plays of the page's items and of its artists' and albums' tracks, in one grouped count.
        tracks = tracks_of(page)
        counted = [i.pk for i in page] + [pk for pk, _, _ in tracks]
        plays = dict(window.filter(item_id__in=counted).values_list("item_id").annotate(n=Count("id")))
        total = _with_tracks(plays, tracks)
    for item in page:
        item.plays_30d = total(item.pk, item.title, item.kind, item.external_id)
        item.plays_of_tracks = of_tracks(item)
    query = urlencode({k: v for k, v in {"q": q, "kind": kind, "sort": "" if sort == "title" else sort}.items() if v})
    context = {"page_obj": page, "q": q, "kind": kind, "kinds": ItemKind.choices, "query": query, "section": "catalogue",
               "sort": sort, "headers": sort_headers(sort, {"q": q, "kind": kind}, CATALOGUE_COLUMNS)}
    if request.htmx:
        return render(request, "audiences/catalogue_list.html#table", context)
    context["kpis"] = catalogue_kpis()
    return render(request, "audiences/catalogue_list.html", context)


# Plays are of tracks: an artist's are its tracks' (by its name), an album's the tracks' that carry its id as
# `album_id` (an artist or album row would otherwise read 0 however much it is played).
TRACK_KEYS = ("pk", "artist", "attributes__album_id")


def tracks_of(items) -> list[tuple]:
    """(pk, artist, album id) of the tracks of these items' artists and albums (one query; none: no query)."""
    artists = [i.title for i in items if i.kind == ItemKind.ARTIST]
    albums = [i.external_id for i in items if i.kind == ItemKind.ALBUM]
    if not artists and not albums:
        return []
    return list(Item.objects.filter(Q(artist__in=artists) | Q(attributes__album_id__in=albums), kind=ItemKind.TRACK)
                .values_list(*TRACK_KEYS))


def _with_tracks(plays: dict[int, int], tracks) -> Callable[[int, str, str, str], int]:
    """An item's plays: its own, plus its tracks' for an artist or an album.

    `tracks`: (pk, artist, album id) of the tracks whose plays `plays` holds.
    """
    by_artist: dict[str, int] = {}
    by_album: dict[str, int] = {}
    for pk, artist, album in tracks:
        n = plays.get(pk, 0)
        if artist:
            by_artist[artist] = by_artist.get(artist, 0) + n
        if album:
            by_album[str(album)] = by_album.get(str(album), 0) + n

    def total(pk: int, title: str, kind: str, external_id: str) -> int:
        rolled = by_artist.get(title, 0) if kind == ItemKind.ARTIST else by_album.get(external_id, 0) if kind == ItemKind.ALBUM else 0
        return plays.get(pk, 0) + rolled

    return total


@require_GET
@viewer_required
def item_detail(request, pk: int):
    item = get_item_for_user(request.user, pk)
    if request.GET.get("part") == "audio":
        return render(request, "audiences/item_detail.html#audio", audio_context(item))
    return render(request, "audiences/item_detail.html", item_context(item, AudioUploadForm()))


@require_POST
@writer_required
def item_audio_upload(request, pk: int):
    item = get_item_for_user(request.user, pk, write=True)
    form = AudioUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(request, "audiences/item_detail.html", item_context(item, form), status=400)
    try:
        audio_jobs.queue_analysis(item, form.cleaned_data["file"], offset=form.cleaned_data["offset"], by=request.user)
    except ValidationError as error:  # the form checked already; kept for callers that skip it
        form.add_error("file", error)
        return render(request, "audiences/item_detail.html", item_context(item, form), status=400)
    messages.info(request, "The recording is being analysed; this card follows its progress.")
    return redirect("catalogue:detail", pk=item.pk)


@require_POST
@writer_required
def audio_train(request):
    job = audio_jobs.queue_training(by=request.user)
    messages.info(request, "The audio models are training; the job page follows its progress.")
    return redirect("jobs:detail", pk=job.pk)


# -- the item page's parts ------------------------------------------------------------------------------


def item_context(item: Item, form: AudioUploadForm) -> dict:
    similar = SimilarItems.objects.filter(item=item).first()
    similar_items = []
    if similar:
        found = Item.objects.in_bulk(similar.items[:10])
        similar_items = [(found[i], score) for i, score in zip(similar.items[:10], similar.scores[:10]) if i in found]
    return {
        "item": item, "section": "catalogue", "form": form,
        "plays_chart": plays_chart(item), "plays_of_tracks": of_tracks(item), "similar": similar, "similar_items": similar_items,
        **audio_context(item), **forecast_context(item),
    }


def audio_context(item: Item) -> dict:
    analyses = list(AudioAnalysis.objects.filter(item=item).select_related("job", "created_by")[:10])
    latest = next((a for a in analyses if a.status == AudioAnalysis.Status.SUCCEEDED), None)
    live = any(a.status in (AudioAnalysis.Status.QUEUED, AudioAnalysis.Status.RUNNING) for a in analyses)
    context = {"item": item, "analyses": analyses, "latest": latest, "live": live,
               "training_job": Job.objects.filter(kind="audio_training").order_by("-pk").first()}
    if latest:
        result = latest.result
        values = result.get("descriptors", {})
        context.update({
            "descriptors": [(label, values.get(key), unit, digits) for key, label, unit, digits in DESCRIPTOR_ROWS if values.get(key) is not None],
            "key": values.get("key"),
            "hit_percent": audio_jobs.hit_percentile(latest.hit_score),
            "tags": {question: [(label, round(100 * p)) for label, p in pairs] for question, pairs in (result.get("tags") or {}).items()},
            "heatmap": heatmap_svg(result.get("spectrogram") or {}),
        })
    return context


def heatmap_svg(heatmap: dict) -> dict | None:
    """Rects for an inline SVG of the chorus log-mel: low bands at the bottom, louder is lighter."""
    rows = heatmap.get("db") or []
    if not rows:
        return None
    low, high = heatmap.get("low_db", -100), heatmap.get("high_db", 0)
    span = max(1, high - low)
    height = len(rows)
    cells = []
    for band, row in enumerate(rows):
        y = height - 1 - band if heatmap.get("lowest_band_first", True) else band
        for x, db in enumerate(row):
            level = (db - low) / span
            # dark blue → yellow: lightness carries the level, so it reads without colour too
            cells.append((x, y, f"hsl({int(240 - 190 * level)},80%,{int(8 + 62 * level)}%)"))
    width = len(rows[0])
    return {"cells": cells, "width": width, "height": height, "seconds": round(width * heatmap.get("seconds_per_column", 0.25), 1),
            "low_db": low, "high_db": high}


def of_tracks(item: Item) -> bool:
    """Whether the item's plays are its tracks' (an artist's by its name, an album's by the album id they carry)."""
    return item.kind in (ItemKind.ARTIST, ItemKind.ALBUM)


def played_as(item: Item) -> list[int]:
    """The items whose plays count as this item's: itself, and for an artist or an album its tracks."""
    return [item.pk, *(pk for pk, _, _ in tracks_of([item]))]


def plays_chart(item: Item, days: int = 90) -> dict:
    """Daily plays over the last `days` days, or since release when that is later (an artist's or album's: its tracks')."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    if item.release_date and item.release_date > first:
        first = min(item.release_date, today)
    counts = dict(
        Activity.objects.filter(item_id__in=played_as(item), kind=ActivityKind.PLAY, occurred_at__date__gte=first)
        .values_list("occurred_at__date").annotate(n=Count("id")).order_by()
    )
    span = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    return {
        "type": "bar",
        "data": {"labels": [d.strftime("%b %d") for d in span],
                 "datasets": [{"label": "Plays", "data": [counts.get(d, 0) for d in span]}]},
        "options": {"plugins": {"legend": {"display": False}}, "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}}},
        "total": sum(counts.values()),
    }


def cumulative_plays(item: Item, release: date, days: int = FORECAST_DAYS) -> list[int]:
    """Cumulative plays at the end of day 1 … `days` after release (day 1 = release day), up to today."""
    last = min(release + timedelta(days=days - 1), timezone.localdate())
    if last < release:
        return []
    counts = dict(
        Activity.objects.filter(item=item, kind=ActivityKind.PLAY, occurred_at__date__gte=release, occurred_at__date__lte=last)
        .values_list("occurred_at__date").annotate(n=Count("id")).order_by()
    )
    total, out = 0, []
    for i in range((last - release).days + 1):
        total += counts.get(release + timedelta(days=i), 0)
        out.append(total)
    return out


def forecast_context(item: Item) -> dict:
    forecasts = list(StreamForecast.objects.filter(item=item).select_related("model_version").order_by("horizon"))
    if not forecasts:
        return {"forecasts": [], "forecast_chart": None}
    release = item.release_date or min(f.made_at for f in forecasts).date()
    actual = cumulative_plays(item, release)
    known = len(actual) >= FORECAST_DAYS
    rows = [{"forecast": f, "actual": actual[FORECAST_DAYS - 1] if known else None} for f in forecasts]
    latest = forecasts[-1]
    curve = [{"x": latest.horizon + i, "y": round(v, 1)} for i, v in enumerate(latest.curve)]
    start = curve[0]["y"] if curve else (actual[latest.horizon - 1] if len(actual) >= latest.horizon else 0)
    datasets = [
        {"label": "Actual cumulative plays", "data": [{"x": i + 1, "y": v} for i, v in enumerate(actual)], "pointRadius": 0, "borderWidth": 2},
        {"label": f"Forecast (median, from the first {latest.horizon} days)", "data": curve, "pointRadius": 0, "borderDash": [2, 2]},
        {"label": "p10–p90 at day 60", "data": [{"x": FORECAST_DAYS, "y": latest.p10}, {"x": FORECAST_DAYS, "y": latest.p90}],
         "pointStyle": "line", "pointRadius": 8, "borderWidth": 3},
        {"label": "Naive baseline", "data": [{"x": latest.horizon, "y": start}, {"x": FORECAST_DAYS, "y": latest.naive}],
         "borderDash": [8, 6], "pointRadius": [0, 5], "fill": False},
    ]
    chart = {
        "type": "line",
        "data": {"datasets": datasets},
        "options": {"parsing": True, "scales": {"x": {"type": "linear", "min": 1, "max": FORECAST_DAYS, "title": {"display": True, "text": "Day since release"}},
                                                 "y": {"beginAtZero": True, "title": {"display": True, "text": "Cumulative plays"}}}},
    }
    return {"forecasts": rows, "forecast_chart": chart, "latest_forecast": latest, "release": release}
