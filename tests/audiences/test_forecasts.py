"""Stream forecasts from the catalogue: the release history, training with simulated releases, forecasts per horizon."""

from datetime import datetime, time, timedelta

import numpy as np
import pytest
from django.utils import timezone

from audiences import forecasts, tasks
from audiences.models import Activity, ActivityKind, AudioAnalysis, Customer, Item, ItemKind, StreamForecast
from ml import forecast
from ml.models import Job, ModelVersion


@pytest.fixture(autouse=True)
def _quick_training(settings, tmp_path, monkeypatch):
    """Fewer releases and boosting rounds: the tests check the plumbing and the numbers' shape, not the model's skill."""
    settings.MODEL_DIR = tmp_path / "models"
    monkeypatch.setattr(forecasts, "MIN_RELEASES", 120)
    monkeypatch.setattr(forecast, "MAX_ROUNDS", 150)


def at(day, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


class Log:
    """Play activities with unique keys, written in one bulk_create."""

    def __init__(self, listeners: int = 30):
        self.customers = Customer.objects.bulk_create(Customer(external_id=f"fan-{i}") for i in range(listeners))
        self.rows: list[Activity] = []

    def play(self, item: Item, when: datetime, times: int = 1, *, kind: int = ActivityKind.PLAY) -> None:
        for _ in range(times):
            n = len(self.rows)
            self.rows.append(Activity(key=n + 1, customer=self.customers[n % len(self.customers)], item=item, kind=kind,
                                      occurred_at=when))

    def save(self) -> None:
        Activity.objects.bulk_create(self.rows, batch_size=2000)


def track(name: str, released, *, genre: str = "pop", artist: str = "The Decays", **attributes) -> Item:
    return Item.objects.create(external_id=name, kind=ItemKind.TRACK, title=name, artist=artist, genres=[genre],
                               release_date=released, attributes=attributes)


@pytest.fixture
def catalogue(db):
    """Five tracks released 70–100 days ago and two released 10 days ago, their plays decaying from a launch peak."""
    today = timezone.localdate()
    log = Log()
    old = [track(f"old-{i}", today - timedelta(days=70 + 7 * i), artist=f"Artist {i % 2}") for i in range(5)]
    recent = [track("new-pop", today - timedelta(days=10), artist="Artist 0"),
              track("new-jazz", today - timedelta(days=10), genre="jazz", artist="Newcomer")]
    for level, item in zip((40, 25, 60, 30, 45, 50, 20), [*old, *recent]):
        released = item.release_date
        for d in range((today - released).days):
            log.play(item, at(released + timedelta(days=d)), round(level * (1 + d / 7) ** -0.9))
    log.save()
    return {"old": old, "recent": recent, "today": today}


def test_release_history_puts_each_play_on_its_day_since_release(db):
    today = timezone.localdate()
    released = today - timedelta(days=5)
    single = track("single", released, tempo=128, energy=0.8, label_tier="Major", marketing=12.5)
    earlier = track("earlier", released - timedelta(days=2))
    classic = track("classic", today - timedelta(days=400))  # released before the log began: its first days are missing
    log = Log()
    log.play(earlier, at(released - timedelta(days=2), 0), 3)  # the first play in the log
    log.play(single, at(released, 0), 2)  # day 0, just after midnight
    log.play(single, at(released + timedelta(days=2), 23))  # day 2, late evening
    log.play(single, at(released + timedelta(days=4), 9), 4)  # day 4
    log.play(single, at(today, 1), 7)  # today is not a whole day yet
    log.play(single, at(released + timedelta(days=1)), 5, kind=ActivityKind.SKIP)  # not a play
    log.play(classic, at(released))
    log.save()
    AudioAnalysis.objects.create(item=earlier, original_name="a.wav", status=AudioAnalysis.Status.SUCCEEDED,
                                 result={"descriptors": {"tempo_bpm": 96.0, "loudness_lufs": -17.5}})

    meta, daily = forecasts.release_history()

    assert list(meta["item_id"]) == [earlier.pk, single.pk]
    row = daily[1]
    assert list(row[:6]) == [2, 0, 1, 0, 4, 0]
    assert row.sum() == 7
    assert list(daily[0][:3]) == [3, 0, 0]
    s = meta.iloc[1]
    assert (s.days_seen, s.genre, s.label_tier, s.marketing, s.tempo, s.energy) == (5, "pop", "major", 12.5, 128, 0.8)
    assert s.artist_followers == 3  # the distinct listeners of the artist's earlier track
    assert np.isnan(s.danceability)
    e = meta.iloc[0]
    assert (e.tempo, e.energy, e.label_tier, e.marketing) == (96.0, 0.5, "indie", 0.0)
    assert np.isnan(e.artist_followers)  # a debut


def test_release_history_reads_the_log_in_a_fixed_number_of_queries(catalogue, django_assert_num_queries):
    # first play, tracks, daily plays (one GROUP BY item, day), listeners per track, audio analyses
    with django_assert_num_queries(5):
        meta, daily = forecasts.release_history()

    assert len(meta) == 7
    assert daily.shape == (7, forecast.TARGET_DAY)
    assert list(daily[-1, :3]) == [20, 18, 16]  # 20 · (1 + d/7)^-0.9, rounded
    assert list(meta["days_seen"]) == [60] * 5 + [10, 10]


def test_training_promotes_a_forecaster_and_forecasts_the_recent_releases_at_the_horizons_they_reached(catalogue):
    result = forecasts.train_and_forecast()

    assert result["trained_on"] == 5
    assert result["simulated"] == 115
    champion = ModelVersion.objects.champions().get(key="forecast:streams")
    assert champion.kind == ModelVersion.Kind.FORECAST
    assert champion.trained_on["simulated_releases"] == 115
    assert {"mape_d3", "mape_d7", "mape_ratio_vs_naive_d7", "mape_d30"} <= set(champion.metrics)
    assert result["mape_ratio_vs_naive_d7"] == pytest.approx(champion.metrics["mape_ratio_vs_naive_d7"], abs=1e-4)
    assert forecast.Forecaster.from_bytes(open(forecasts.registry.artefact_path(champion), "rb").read()).horizons == (3, 7, 14, 30)

    rows = list(StreamForecast.objects.order_by("item_id", "horizon"))
    assert result["forecasts"] == len(rows) == 4
    assert {(r.item_id, r.horizon) for r in rows} == {(i.pk, k) for i in catalogue["recent"] for k in (3, 7)}
    for r in rows:
        released = r.item.release_date
        seen = Activity.objects.filter(item=r.item, occurred_at__lt=at(released + timedelta(days=r.horizon), 0)).count()
        assert r.p10 <= r.p50 <= r.p90
        assert r.p10 >= seen - 1e-6
        assert len(r.curve) == 61 - r.horizon
        assert r.curve[0] == pytest.approx(seen, abs=0.1)
        assert r.curve[-1] == pytest.approx(r.p50, rel=1e-3, abs=0.1)
        assert r.curve == sorted(r.curve)
        assert r.naive > seen
        assert r.model_version == champion


def test_a_rerun_replaces_the_forecasts_and_the_champion(catalogue):
    forecasts.train_and_forecast()
    first = set(StreamForecast.objects.values_list("pk", flat=True))

    forecasts.train_and_forecast()

    assert set(StreamForecast.objects.values_list("pk", flat=True)) == first
    assert StreamForecast.objects.count() == 4
    versions = ModelVersion.objects.filter(key="forecast:streams")
    assert versions.count() == 2
    champion = versions.champions().get()
    assert champion.version == 2
    assert set(StreamForecast.objects.values_list("model_version", flat=True)) == {champion.pk}


def test_the_task_marks_the_job_succeeded_and_says_how_many_releases_were_simulated(catalogue):
    job = Job.objects.create(kind="stream_forecast", title="Stream forecasts")

    tasks.train_forecaster.delay(job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.result["simulated"] == 115
    assert job.message == forecasts.summary(job.result)
    assert job.message.startswith("Trained on 5 catalogue releases + 115 simulated")
    assert "4 forecasts for 2 recent releases" in job.message


@pytest.mark.django_db
def test_seed_music_queues_each_music_job_once_until_its_model_exists():
    from config.celery import app
    from django.core.management import call_command

    from ml.models import Job

    app.conf.task_always_eager = False  # queued, not run: the worker would take them
    call_command("seed_music", verbosity=0)
    call_command("seed_music", verbosity=0)
    assert sorted(Job.objects.values_list("kind", flat=True)) == ["audio_training", "recommendations", "stream_forecast"]
