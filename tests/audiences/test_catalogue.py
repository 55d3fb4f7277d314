"""The catalogue pages: list, item page, audio uploads and their analysis, audio model training."""

import io
from datetime import timedelta

import pytest
import soundfile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from audiences import audio_jobs
from audiences.models import Activity, ActivityKind, AudioAnalysis, Customer, Item, ItemKind, SimilarItems, StreamForecast
from ml.models import Job, ModelVersion

pytestmark = pytest.mark.django_db


def wav_bytes(seconds: float = 40.0, seed: int = 3) -> bytes:
    from ml.audio_synth import SR, synthesize

    y = synthesize(seed, genre="pop", mood="happy", tempo=120.0, energy=0.6, catchiness=0.7, duration=seconds)
    buffer = io.BytesIO()
    soundfile.write(buffer, y, SR, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture
def item(db):
    return Item.objects.create(external_id="t-1", title="Neon Rain", artist="Mira", genres=["k-pop"], moods=["upbeat"],
                               release_date=timezone.localdate() - timedelta(days=20))


def upload(client, item, data: bytes, name: str = "neon.wav", **extra):
    return client.post(reverse("catalogue:audio_upload", args=[item.pk]),
                       {"file": SimpleUploadedFile(name, data, content_type="audio/wav"), **extra})


# -- the list ---------------------------------------------------------------------------------------------


def test_the_list_shows_kpis_items_and_their_recent_plays(client_for, ann, item):
    Item.objects.create(external_id="a-1", title="Mira", kind=ItemKind.ARTIST)
    customer = Customer.objects.create(external_id="c-1")
    now = timezone.now()
    for k in range(3):
        Activity.objects.create(key=k + 1, customer=customer, item=item, kind=ActivityKind.PLAY, occurred_at=now - timedelta(days=k))
    Activity.objects.create(key=99, customer=customer, item=item, kind=ActivityKind.PLAY, occurred_at=now - timedelta(days=40))
    response = client_for(ann).get(reverse("catalogue:list"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Neon Rain" in page and "Analysed recordings" in page
    assert [i.plays_30d for i in response.context["page_obj"] if i.pk == item.pk] == [3]
    assert response.context["kpis"]["items"] == 2 and response.context["kpis"]["tracks"] == 1


def test_the_list_searches_and_filters_by_kind(client_for, ann, item):
    Item.objects.create(external_id="t-2", title="Old Song", artist="Someone")
    Item.objects.create(external_id="a-1", title="Mira", kind=ItemKind.ARTIST)
    client = client_for(ann)
    found = client.get(reverse("catalogue:list"), {"q": "neon"}).context["page_obj"]
    assert [i.title for i in found] == ["Neon Rain"]
    artists = client.get(reverse("catalogue:list"), {"kind": "artist"}).context["page_obj"]
    assert [i.title for i in artists] == ["Mira"]
    partial = client.get(reverse("catalogue:list"), {"q": "zzz"}, HTTP_HX_REQUEST="true")
    assert "No item matches" in partial.content.decode() and "<html" not in partial.content.decode()


def test_the_list_sorts_by_its_columns_and_the_most_played_first(client_for, ann, item):
    old = Item.objects.create(external_id="t-2", title="Aardvark Blues", artist="Zed", release_date=timezone.localdate() - timedelta(days=900))
    undated = Item.objects.create(external_id="t-3", title="Zither Dawn", artist="Ann")
    customer = Customer.objects.create(external_id="c-1")
    now = timezone.now()
    plays = [(old, now - timedelta(days=1))] * 4 + [(item, now - timedelta(days=2))] * 2 + [(undated, now - timedelta(days=45))] * 9
    Activity.objects.bulk_create([Activity(key=k, customer=customer, item=i, kind=ActivityKind.PLAY, occurred_at=at)
                                  for k, (i, at) in enumerate(plays, 1)])
    client = client_for(ann)

    def titles(sort):
        return [i.title for i in client.get(reverse("catalogue:list"), {"sort": sort}).context["page_obj"]]

    assert titles("") == titles("nonsense") == ["Aardvark Blues", "Neon Rain", "Zither Dawn"]
    assert titles("-plays") == ["Aardvark Blues", "Neon Rain", "Zither Dawn"]  # 4, 2, and 9 plays but 45 days ago
    assert titles("plays") == ["Zither Dawn", "Neon Rain", "Aardvark Blues"]
    assert titles("-released") == ["Neon Rain", "Aardvark Blues", "Zither Dawn"]  # no release date: last either way
    assert titles("released") == ["Aardvark Blues", "Neon Rain", "Zither Dawn"]
    assert titles("artist") == ["Zither Dawn", "Neon Rain", "Aardvark Blues"]  # Ann, Mira, Zed
    response = client.get(reverse("catalogue:list"), {"sort": "-plays", "q": "a"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    # The header keeps the search and toggles the active column; the form's hidden sort follows (out of band).
    assert 'href="?q=a&amp;sort=plays"' in page and 'aria-sort="descending"' in page
    assert 'id="catalogue-sort" name="sort" value="-plays" hx-swap-oob="true"' in page
    assert 'href="?q=a&amp;sort=-released"' in page  # released: the newest first on the first click


def test_artists_and_albums_count_the_plays_of_their_tracks(client_for, ann, item):
    # Plays are of tracks: an artist (by its name) and an album (by the album id its tracks carry) add theirs up.
    Item.objects.filter(pk=item.pk).update(attributes={"album_id": "alb-1"})
    other = Item.objects.create(external_id="t-2", title="Second", artist="Mira", attributes={"album_id": "alb-2"})
    elsewhere = Item.objects.create(external_id="t-3", title="Cover", artist="Zed", attributes={"album_id": "alb-1"})
    artist = Item.objects.create(external_id="a-1", title="Mira", kind=ItemKind.ARTIST)
    album = Item.objects.create(external_id="alb-1", title="First Light", artist="Mira", kind=ItemKind.ALBUM)
    Item.objects.create(external_id="a-2", title="Nobody", kind=ItemKind.ARTIST)
    customer = Customer.objects.create(external_id="c-1")
    now = timezone.now()
    plays = [item] * 3 + [other] * 2 + [elsewhere] * 4
    Activity.objects.bulk_create([Activity(key=k, customer=customer, item=i, kind=ActivityKind.PLAY, occurred_at=now - timedelta(hours=k))
                                  for k, i in enumerate(plays, 1)])
    Activity.objects.create(key=99, customer=customer, item=other, kind=ActivityKind.PLAY, occurred_at=now - timedelta(days=40))
    client = client_for(ann)
    expected = {"Neon Rain": 3, "Second": 2, "Cover": 4, "Mira": 5, "First Light": 7, "Nobody": 0}
    for sort in ("", "-plays"):  # the page's items counted, and every item counted to rank them
        response = client.get(reverse("catalogue:list"), {"sort": sort})
        assert {i.title: i.plays_30d for i in response.context["page_obj"]} == expected
    ranked = [i.title for i in client.get(reverse("catalogue:list"), {"sort": "-plays"}).context["page_obj"]]
    assert ranked == ["First Light", "Mira", "Cover", "Neon Rain", "Second", "Nobody"]
    assert "of its tracks" in client.get(reverse("catalogue:list"), {"kind": "artist"}).content.decode()
    for shown, total in ((artist, 6), (album, 7), (item, 3)):  # the item page's 90 days of daily plays too
        response = client.get(reverse("catalogue:detail", args=[shown.pk]))
        assert response.context["plays_chart"]["total"] == total
        assert ("Daily plays of its tracks" in response.content.decode()) == (shown != item)


def test_an_empty_catalogue_says_what_to_do(client_for, mark):
    assert "The catalogue is empty" in client_for(mark).get(reverse("catalogue:list")).content.decode()


def test_outsiders_and_wrong_methods_are_refused(client, client_for, nora, ann, item):
    assert client.get(reverse("catalogue:list")).status_code == 302
    assert client_for(nora).get(reverse("catalogue:detail", args=[item.pk])).status_code == 403
    client = client_for(ann)
    assert client.post(reverse("catalogue:list")).status_code == 405
    assert client.post(reverse("catalogue:detail", args=[item.pk])).status_code == 405
    assert client.get(reverse("catalogue:audio_upload", args=[item.pk])).status_code == 405
    assert upload(client, item, wav_bytes(12)).status_code == 403
    assert client.post(reverse("catalogue:audio_train")).status_code == 403
    assert client.get(reverse("catalogue:detail", args=[9999])).status_code == 404
    assert not AudioAnalysis.objects.exists()


# -- the item page ----------------------------------------------------------------------------------------


def test_an_item_page_without_audio_forecasts_or_similar_items_shows_empty_states(client_for, ann, item):
    page = client_for(ann).get(reverse("catalogue:detail", args=[item.pk])).content.decode()
    assert "No recording analysed yet" in page and "No similar items yet" in page and "No release forecast" in page
    assert "Upload and analyse" not in page  # analysts read only


def test_the_item_page_shows_similar_items_and_says_when_they_come_from_tags(client_for, ann, item):
    other = Item.objects.create(external_id="t-2", title="Paper Moon", artist="Jun")
    SimilarItems.objects.create(item=item, items=[other.pk], scores=[0.81], model_key="recommender:als", cold_start=True,
                                built_at=timezone.now())
    page = client_for(ann).get(reverse("catalogue:detail", args=[item.pk])).content.decode()
    assert "Paper Moon" in page and "0.81" in page and "cold start" in page


def test_the_item_page_draws_the_release_forecast_against_actual_plays(client_for, ann, item):
    customer = Customer.objects.create(external_id="c-1")
    release = item.release_date
    start = timezone.make_aware(timezone.datetime.combine(release, timezone.datetime.min.time()) + timedelta(hours=12))
    for day in range(5):
        Activity.objects.create(key=day + 1, customer=customer, item=item, kind=ActivityKind.PLAY, occurred_at=start + timedelta(days=day))
    for horizon in (3, 7, 14):
        StreamForecast.objects.create(item=item, horizon=horizon, p10=50, p50=80, p90=130, naive=100,
                                      curve=[float(5 + i) for i in range(61 - horizon)], made_at=timezone.now())
    response = client_for(ann).get(reverse("catalogue:detail", args=[item.pk]))
    page = response.content.decode()
    assert "chart-forecast" in page and "14 days" in page and "not yet" in page
    chart = response.context["forecast_chart"]
    actual = chart["data"]["datasets"][0]["data"]
    assert actual[4] == {"x": 5, "y": 5} and len(actual) == 21
    assert chart["data"]["datasets"][1]["data"][0] == {"x": 14, "y": 5.0}
    assert [p["y"] for p in chart["data"]["datasets"][2]["data"]] == [50, 130]


# -- audio ------------------------------------------------------------------------------------------------


def test_an_uploaded_recording_is_analysed_and_its_chorus_shown(client_for, mark, item, django_capture_on_commit_callbacks):
    client = client_for(mark)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, item, wav_bytes(40), offset="")
    assert response.status_code == 302
    analysis = AudioAnalysis.objects.get()
    assert analysis.status == "succeeded", analysis.error
    assert analysis.job.status == Job.Status.SUCCEEDED and analysis.job.kind == "audio"
    assert analysis.result["chorus"]["end_s"] > analysis.result["chorus"]["start_s"]
    assert analysis.hit_score is None  # no hit model yet
    page = client.get(reverse("catalogue:detail", args=[item.pk])).content.decode()
    assert "Chorus" in page and "Why:" in page and "Integrated loudness" in page and "<svg" in page
    assert "No hit model yet" in page


def test_an_operator_chorus_offset_is_used(client_for, mark, item, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        upload(client_for(mark), item, wav_bytes(40), offset="5")
    analysis = AudioAnalysis.objects.get()
    assert analysis.offset == 5 and analysis.result["chorus"]["start_s"] == 5 and analysis.result["chorus"]["chosen_by"] == "operator"


def test_garbage_named_wav_fails_the_analysis_with_a_readable_error(client_for, mark, item, django_capture_on_commit_callbacks):
    client = client_for(mark)
    with django_capture_on_commit_callbacks(execute=True):
        upload(client, item, b"this is not audio at all" * 100, name="broken.wav")
    analysis = AudioAnalysis.objects.get()
    assert analysis.status == "failed" and "could not decode broken.wav" in analysis.error and "object at 0x" not in analysis.error
    assert analysis.job.status == Job.Status.SUCCEEDED  # the file was bad, not the system
    page = client.get(reverse("catalogue:detail", args=[item.pk])).content.decode()
    assert "could not decode" in page and "Failed" in page


def test_a_bad_extension_is_refused_by_the_form_and_nothing_is_stored(client_for, mark, item, settings):
    response = upload(client_for(mark), item, b"RIFF....", name="notes.txt")
    assert response.status_code == 400
    assert "is not a wav, ogg, flac or mp3 file" in response.content.decode()
    assert not AudioAnalysis.objects.exists() and not Job.objects.exists()
    media = settings.MEDIA_ROOT / "audio"
    assert not media.exists() or not any(media.rglob("*.*"))


def test_recordings_are_analysed_per_track_not_per_artist_or_album(client_for, mark, item):
    artist = Item.objects.create(external_id="a-1", title="Mira", artist="Mira", kind=ItemKind.ARTIST)
    client = client_for(mark)
    page = client.get(reverse("catalogue:detail", args=[artist.pk])).content.decode()
    assert "Recordings are analysed per track" in page and "Upload and analyse" not in page
    assert "?q=Mira&amp;kind=track" in page  # a link to the artist's tracks
    response = upload(client, artist, wav_bytes(5))
    assert response.status_code == 400 and "is an artist; recordings are analysed per track" in response.content.decode()
    assert not AudioAnalysis.objects.exists() and not Job.objects.exists()
    assert "Upload and analyse" in client.get(reverse("catalogue:detail", args=[item.pk])).content.decode()


def test_a_queued_analysis_is_polled_with_its_progress(client_for, ann, item):
    job = Job.objects.create(kind="audio", title="Audio analysis", progress=0.3, message="Decoding")
    AudioAnalysis.objects.create(item=item, file="audio/x.wav", original_name="x.wav", status="running", job=job)
    client = client_for(ann)
    page = client.get(reverse("catalogue:detail", args=[item.pk])).content.decode()
    assert 'hx-trigger="every 2s' in page and "Decoding" in page
    part = client.get(reverse("catalogue:detail", args=[item.pk]), {"part": "audio"}).content.decode()
    assert part.lstrip().startswith('<div class="card" id="audio-card"') and "30%" in part


def test_the_train_button_queues_a_training_job(client_for, mark, monkeypatch, django_capture_on_commit_callbacks):
    from audiences import tasks

    sent = []
    monkeypatch.setattr(tasks.train_audio_models, "apply_async", lambda args, kwargs: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(mark).post(reverse("catalogue:audio_train"))
    job = Job.objects.get(kind="audio_training")
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", args=[job.pk])
    assert sent == [(job.pk,)] and job.created_by == mark


# -- training ---------------------------------------------------------------------------------------------


def demo_catalogue(n: int = 24) -> list[Item]:
    genres = ["k-pop", "hip-hop", "rock", "classical"]
    moods = ["upbeat", "chill", "dark", "melancholic"]
    return [Item.objects.create(external_id=f"demo-{i}", title=f"Demo {i}", genres=[genres[i % 4]], moods=[moods[(i // 4) % 4]],
                                attributes={"source": "demo"}) for i in range(n)]


def test_training_registers_champion_hit_model_and_tagger_that_later_analyses_use(
        client_for, mark, item, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(audio_jobs, "DEMO_SECONDS", 32.0)
    items = demo_catalogue(24)
    steps = []
    result = audio_jobs.train(lambda f, m: steps.append(f), epochs=1)
    assert result["tracks"] == 24 and result["targets"] == {"activity": 0, "synth truth": 24}
    hit = ModelVersion.objects.champions().get(key="audio:hit")
    tagger = ModelVersion.objects.champions().get(key="audio:tagger")
    assert hit.kind == "audio" and tagger.kind == "tagger"
    assert hit.trained_on["targets"]["synth truth"] == 24 and "synthesiser's truth" in hit.notes
    assert "spearman" in hit.report and tagger.report["genre"]["accuracy"] >= 0
    items[0].refresh_from_db()
    truth = items[0].attributes["audio_truth"]
    assert truth == audio_jobs.audio_truth(items[0])  # stable: stored, not redrawn
    assert steps[-1] == 1.0
    assert "24 tracks" in audio_jobs.training_summary(result)

    with django_capture_on_commit_callbacks(execute=True):
        upload(client_for(mark), item, wav_bytes(40))
    analysis = AudioAnalysis.objects.get()
    assert analysis.status == "succeeded" and 0 <= analysis.hit_score <= 1
    assert analysis.result["tags"]["genre"] and analysis.result["hit_model"]["version"] == hit.version
    page = client_for(mark).get(reverse("catalogue:detail", args=[item.pk])).content.decode()
    assert "likely to engage better than" in page and "audio:hit v1" in page


def test_early_repeat_share_counts_listeners_who_came_back_in_the_first_two_weeks(item):
    customers = [Customer.objects.create(external_id=f"c-{i}") for i in range(4)]
    start = timezone.make_aware(timezone.datetime.combine(item.release_date, timezone.datetime.min.time()) + timedelta(hours=10))
    key = iter(range(1, 100))
    for c in customers[:2]:  # two repeat listeners
        for day in (0, 3):
            Activity.objects.create(key=next(key), customer=c, item=item, kind=ActivityKind.PLAY, occurred_at=start + timedelta(days=day))
    Activity.objects.create(key=next(key), customer=customers[2], item=item, kind=ActivityKind.PLAY, occurred_at=start)
    # a second play after the window does not make a repeat listener
    Activity.objects.create(key=next(key), customer=customers[3], item=item, kind=ActivityKind.PLAY, occurred_at=start)
    Activity.objects.create(key=next(key), customer=customers[3], item=item, kind=ActivityKind.PLAY, occurred_at=start + timedelta(days=15))
    assert audio_jobs.early_repeat_shares([item]) == {item.pk: (0.5, 4)}
