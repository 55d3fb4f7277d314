"""Audio jobs, the Django side: queue an upload, analyse it with the serving models, learn those models.

ml/audio.py does the listening (pure, no Django); this module finds the files, the champion models
and the engagement figures in the database and stores what comes back. Heavy libraries (torch,
librosa) are imported by ml.audio inside its functions, so importing this module from a view is cheap.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from ml.models import Job, ModelVersion, enqueue

from .models import Activity, ActivityKind, AudioAnalysis, Item, ItemKind

Progress = Callable[[float, str], None]

ALLOWED_EXTENSIONS = (".wav", ".ogg", ".flac", ".mp3")
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
HIT_KEY, TAGGER_KEY = "audio:hit", "audio:tagger"
EARLY_DAYS = 14  # the engagement target reads a release's first two weeks of plays
MIN_EARLY_LISTENERS = 20  # below this a repeat share is mostly noise; demo items fall back to their truth
DEMO_TRACKS = 300
DEMO_SECONDS = 60.0  # as bench/audio.py: the synthesiser plans verse and chorus for a minute (≈ 0.4 s a track to synthesise and hear)
HIT_EPOCHS = 20  # bench/audio.py: 30 epochs take ~60 s for 288 tracks on one thread; 20 keep the job under a minute of training


def check_track(item: Item) -> None:
    """Recordings are of tracks: an artist, album, concert or product has none to analyse."""
    if item.kind != ItemKind.TRACK:
        raise ValidationError(f"“{item.title}” is {'an' if item.kind in ('artist', 'album') else 'a'} {item.get_kind_display().lower()}; "
                              "recordings are analysed per track: open one of its tracks.")


def check_upload(upload) -> None:
    """Raise ValidationError naming what is wrong with an uploaded recording before anything is stored."""
    name = getattr(upload, "name", "") or ""
    if Path(name).suffix.lower() not in ALLOWED_EXTENSIONS:
        raise ValidationError(f"“{name}” is not a wav, ogg, flac or mp3 file: upload the recording in one of those formats.")
    if upload.size > MAX_UPLOAD_BYTES:
        raise ValidationError(f"“{name}” is {upload.size / 1024 / 1024:.0f} MB; recordings up to 50 MB can be analysed.")
    if upload.size == 0:
        raise ValidationError(f"“{name}” is empty.")


def queue_analysis(item: Item, upload, *, offset: float | None = None, by=None) -> AudioAnalysis:
    """Store the recording and queue its analysis on the ml queue once this transaction commits."""
    from . import tasks

    check_track(item)
    check_upload(upload)
    with transaction.atomic():
        job = Job.objects.create(kind="audio", title=f"Audio analysis: {item.title}"[:200], created_by=by)
        analysis = AudioAnalysis(item=item, original_name=Path(upload.name).name[:255], offset=offset, job=job, created_by=by)
        analysis.file.save(Path(upload.name).name, upload, save=False)
        analysis.save()
        enqueue(tasks.analyse_audio, job, analysis.pk)
    return analysis


def queue_training(*, by=None) -> Job:
    """Queue the hit model and tagger training; the job page and the item page follow it."""
    from . import tasks

    with transaction.atomic():
        job = Job.objects.create(kind="audio_training", title="Train audio models", created_by=by)
        enqueue(tasks.train_audio_models, job)
    return job


def champion(key: str) -> ModelVersion | None:
    return ModelVersion.objects.champions().filter(key=key).first()


def _load_models() -> tuple[Any, Any, ModelVersion | None, ModelVersion | None]:
    from ml import audio
    from ml.registry import artefact_path

    hit_version, tagger_version = champion(HIT_KEY), champion(TAGGER_KEY)
    hit_model = audio.load_hit_model(artefact_path(hit_version).read_bytes()) if hit_version else None
    tagger = audio.load_tagger(artefact_path(tagger_version).read_bytes()) if tagger_version else None
    return hit_model, tagger, hit_version, tagger_version


def analyse(analysis: AudioAnalysis, progress: Progress) -> AudioAnalysis:
    """Analyse the stored recording; a recording the job cannot use fails the analysis, not the job."""
    from ml import audio

    AudioAnalysis.objects.filter(pk=analysis.pk).update(status=AudioAnalysis.Status.RUNNING, error="")
    progress(0.1, "Loading the models")
    hit_model, tagger, hit_version, tagger_version = _load_models()
    progress(0.3, "Decoding, finding the chorus, describing")
    try:
        with analysis.file.open("rb") as fh:
            result = audio.analyse(fh, name=analysis.original_name, offset=analysis.offset, hit_model=hit_model, tagger=tagger)
    except audio.AudioError as error:
        analysis.status, analysis.error, analysis.result, analysis.hit_score = AudioAnalysis.Status.FAILED, readable(error), {}, None
    else:
        result["hit_model"] = {"key": HIT_KEY, "version": hit_version.version, "id": hit_version.pk} if hit_version else None
        result["tagger"] = {"key": TAGGER_KEY, "version": tagger_version.version, "id": tagger_version.pk} if tagger_version else None
        analysis.status, analysis.error, analysis.result, analysis.hit_score = AudioAnalysis.Status.SUCCEEDED, "", result, result["hit_score"]
    analysis.finished_at = timezone.now()
    analysis.save(update_fields=["status", "error", "result", "hit_score", "finished_at"])
    progress(1.0, "Done")
    return analysis


def readable(error: Exception) -> str:
    """The decoder's message without the in-memory file object it names (`<_io.BytesIO object at 0x…>`)."""
    return re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "the file", str(error))


def summary(analysis: AudioAnalysis) -> str:
    if analysis.status == AudioAnalysis.Status.FAILED:
        return f"{analysis.original_name}: {analysis.error}"[:300]
    chorus = analysis.result.get("chorus", {})
    text = f"{analysis.original_name}: chorus {chorus.get('start_s', 0):.0f}–{chorus.get('end_s', 0):.0f} s"
    if analysis.hit_score is not None:
        text += f", hit score {analysis.hit_score:.2f}"
    return text[:300]


def hit_percentile(score: float | None) -> int | None:
    """The hit score is a percentile rank already: 0.8 reads 'better than 80 % of the catalogue'."""
    return None if score is None else round(100 * score)


# -- training ---------------------------------------------------------------------------------------------


def audio_truth(item: Item) -> dict:
    """The demo item's hidden audio properties, drawn once from its pk and kept in its attributes."""
    from ml.audio_synth import catalogue_truth, mood_of, sound_of

    truth = (item.attributes or {}).get("audio_truth")
    if truth:
        return truth
    drawn = catalogue_truth(1, seed=item.pk)[0]
    truth = {
        "seed": drawn["seed"], "genre": sound_of((item.genres or [""])[0]), "mood": mood_of((item.moods or [""])[0]),
        "tempo": drawn["tempo"], "energy": drawn["energy"], "catchiness": drawn["catchiness"], "repeat_share": drawn["repeat_share"],
    }
    item.attributes = {**(item.attributes or {}), "audio_truth": truth}
    item.save(update_fields=["attributes", "updated_at"])
    return truth


def early_repeat_shares(items: list[Item]) -> dict[int, tuple[float, int]]:
    """{item id: (repeat share, early listeners)} from plays in each item's first EARLY_DAYS days after release.

    One grouped query: plays per (item, customer) within the window; the shares are counted in Python
    over those pairs, which number at most the early listeners of these items.
    """
    windows = {i.pk: i.release_date for i in items if i.release_date}
    if not windows:
        return {}
    first = min(windows.values())
    last = max(windows.values()) + timedelta(days=EARLY_DAYS)
    rows = (
        Activity.objects.filter(item_id__in=list(windows), kind=ActivityKind.PLAY, occurred_at__date__gte=first,
                                occurred_at__date__lt=last)
        .values("item_id", "customer_id", "occurred_at__date")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_pair: dict[tuple[int, int], int] = {}
    for row in rows:
        release = windows[row["item_id"]]
        if release <= row["occurred_at__date"] < release + timedelta(days=EARLY_DAYS):
            pair = (row["item_id"], row["customer_id"])
            per_pair[pair] = per_pair.get(pair, 0) + row["n"]
    listeners: dict[int, list[int]] = {}
    for (item_id, _), n in per_pair.items():
        counts = listeners.setdefault(item_id, [0, 0])
        counts[0] += 1
        counts[1] += n >= 2
    return {item_id: (repeat / total, total) for item_id, (total, repeat) in listeners.items()}


def _training_set(progress: Progress) -> tuple[list, list, list, list[dict], list[dict]]:
    """(spectrograms, targets, descriptor dicts, tag labels, rows describing where each came from)."""
    from ml import audio
    from ml.audio_synth import SR, mood_of, sound_of, synthesize

    analysed = list(AudioAnalysis.objects.filter(status=AudioAnalysis.Status.SUCCEEDED).select_related("item").order_by("item_id", "-finished_at"))
    latest: dict[int, AudioAnalysis] = {}
    for a in analysed:
        latest.setdefault(a.item_id, a)
    # Every k-th demo track, not the first ones: the catalogue is generated artist by artist, so a prefix is a few genres.
    ids = list(Item.objects.filter(kind=ItemKind.TRACK, attributes__source="demo").exclude(pk__in=list(latest))
               .order_by("pk").values_list("pk", flat=True))
    chosen = ids[:: max(1, len(ids) // DEMO_TRACKS)][:DEMO_TRACKS]
    demo = list(Item.objects.filter(pk__in=chosen).order_by("pk"))
    items = [a.item for a in latest.values()] + demo
    shares = early_repeat_shares(items)
    spectrograms, targets, values, rows = [], [], [], []
    total = max(1, len(items))
    for n, item in enumerate(items):
        share, listeners = shares.get(item.pk, (None, 0))
        analysis = latest.get(item.pk)
        truth = None
        try:
            if analysis is not None:
                with analysis.file.open("rb") as fh:
                    y, sr = audio.decode(fh, name=analysis.original_name)
                result, spectrogram = audio.analyse_signal(y, sr, name=analysis.original_name, offset=analysis.offset)
                audio_source = "upload"
            else:
                truth = audio_truth(item)
                y = synthesize(truth["seed"], genre=truth["genre"], mood=truth["mood"], tempo=truth["tempo"],
                               energy=truth["energy"], catchiness=truth["catchiness"], duration=DEMO_SECONDS)
                result, spectrogram = audio.analyse_signal(y, SR, name=item.title)
                audio_source = "synthesised"
        except audio.AudioError:
            continue
        if listeners >= MIN_EARLY_LISTENERS:
            target, target_source = share, "activity"
        elif truth is not None:
            target, target_source = truth["repeat_share"], "synth truth"
        else:
            continue  # an upload without enough early listeners has no engagement to learn from
        spectrograms.append(spectrogram)
        targets.append(float(target))
        values.append(result["descriptors"])
        rows.append({"item": item.pk, "audio": audio_source, "target": target_source, "early_listeners": listeners,
                     "genre": sound_of((item.genres or [""])[0]), "mood": mood_of((item.moods or [""])[0])})
        if n % 10 == 0:
            progress(0.05 + 0.45 * n / total, f"Listening to the catalogue: {n + 1} of {total}")
    return spectrograms, targets, values, rows


def train(progress: Progress, *, epochs: int = HIT_EPOCHS) -> dict:
    """Learn the hit model and the tagger from the catalogue's audio, register and promote both."""
    import numpy as np

    from ml import audio
    from ml.registry import promote, register_candidate

    progress(0.02, "Collecting the catalogue's audio")
    spectrograms, targets, values, rows = _training_set(progress)
    if len(rows) < 10:
        raise ValueError(f"Only {len(rows)} tracks have audio and an engagement figure; at least 10 are needed to learn anything.")
    sources = {"activity": sum(r["target"] == "activity" for r in rows), "synth truth": sum(r["target"] == "synth truth" for r in rows)}
    audio_sources = {"upload": sum(r["audio"] == "upload" for r in rows), "synthesised": sum(r["audio"] == "synthesised" for r in rows)}
    trained_on = {"tracks": len(rows), "targets": sources, "audio": audio_sources, "early_days": EARLY_DAYS,
                  "min_early_listeners": MIN_EARLY_LISTENERS}
    note = (f"Engagement = repeat-listen share of the first {EARLY_DAYS} days' plays: {sources['activity']} tracks from Activity "
            f"(≥ {MIN_EARLY_LISTENERS} early listeners), {sources['synth truth']} from the demo synthesiser's truth.")

    progress(0.5, "Training the hit model (CNN + GRU)")
    x = np.stack(spectrograms)
    hit_bytes, hit_report = audio.train_hit_model(
        x, targets, descriptors=values, epochs=epochs, threads=1,
        progress=lambda f, m: progress(0.5 + 0.35 * f, m),
    )
    hit_report = {**hit_report, "targets": sources, "rows": rows}
    hit = register_candidate(HIT_KEY, ModelVersion.Kind.AUDIO, hit_bytes, suffix=".pt", report=hit_report, trained_on=trained_on,
                             metrics={k: hit_report.get(k) for k in ("mae", "spearman", "auc_top_quartile") if k in hit_report},
                             notes=note)
    progress(0.88, "Training the tagger")
    features = np.stack([audio.tag_features(s, v) for s, v in zip(spectrograms, values)])
    labels = {q: [r[q] for r in rows] for q in ("genre", "mood")}
    labels = {q: v for q, v in labels.items() if len(set(v)) > 1}  # one label everywhere: nothing to tell apart
    tagger = None
    if labels:
        tag_bytes, tag_report = audio.train_tagger(features, labels)
        tagger = register_candidate(TAGGER_KEY, ModelVersion.Kind.TAGGER, tag_bytes, suffix=".npz", report=tag_report,
                                    trained_on=trained_on, metrics=_flat_metrics(tag_report),
                                    notes=f"{' and '.join(labels).capitalize()} from the items' tags.")
    # Promoted at once: there is no online traffic to gate on, and the report beside it says how it compares to the baseline.
    promote(hit)
    if tagger is not None:
        promote(tagger)
    progress(1.0, "Done")
    tag_report = tag_report if tagger is not None else {"skipped": "every track has the same genre and mood"}
    return {"hit_model": hit.pk, "hit_version": hit.version, "tagger": tagger and tagger.pk,
            "tagger_version": tagger and tagger.version,
            "tracks": len(rows), "targets": sources, "audio": audio_sources,
            "spearman": hit_report.get("spearman"), "baseline": hit_report.get("baseline"), "tagger_report": _flat_metrics(tag_report)}


def _flat_metrics(report: dict) -> dict:
    """The numbers of a report's top level and of one level below (the tagger reports per question)."""
    flat = {}
    for key, value in report.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = value
        elif isinstance(value, dict):
            for sub, number in value.items():
                if isinstance(number, (int, float)) and not isinstance(number, bool):
                    flat[f"{key}_{sub}"] = number
    return flat


def training_summary(result: dict) -> str:
    targets = result.get("targets", {})
    spearman = result.get("spearman")
    tagger = f" and tagger v{result['tagger_version']}" if result.get("tagger_version") else ""
    text = (f"Hit model v{result.get('hit_version')}{tagger} from {result.get('tracks')} tracks "
            f"({targets.get('activity', 0)} targets from plays, {targets.get('synth truth', 0)} from the demo truth)")
    if spearman is not None:
        text += f"; held-out Spearman {spearman:.2f}"
    return text[:300]
