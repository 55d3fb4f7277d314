"""Recommendations built from the platform's plays: two taste clusters, real ALS and IUF fits."""

from datetime import datetime, timedelta, timezone as dt_timezone

import numpy as np
import pytest
from django.urls import reverse

from audiences import recommend
from audiences.models import Activity, ActivityKind, Customer, Item, Recommendations, SimilarItems
from ml.models import Job, ModelVersion

START = datetime(2026, 11, 1, 12, 0, tzinfo=dt_timezone.utc)


def make_world(customers_per_cluster: int = 30, items_per_cluster: int = 10, seed: int = 0) -> dict:
    """Cluster A (hip-hop, energetic, English) and B (classical, calm, German): everyone plays 6 of their cluster's items."""
    rng = np.random.default_rng(seed)
    clusters = {}
    for name, genre, mood, language in (("a", "hip-hop", "energetic", "en"), ("b", "classical", "calm", "de")):
        items = Item.objects.bulk_create(
            Item(external_id=f"{name}-item-{i}", title=f"{name.upper()} song {i}", artist=f"{name.upper()} artist {i % 3}",
                 genres=[genre], moods=[mood], language=language) for i in range(items_per_cluster))
        people = Customer.objects.bulk_create(Customer(external_id=f"{name}-cust-{i}") for i in range(customers_per_cluster))
        clusters[name] = {"items": items, "customers": people}
    activities, key = [], 0
    for cluster in clusters.values():
        for c, customer in enumerate(cluster["customers"]):
            for item_index in rng.permutation(len(cluster["items"]))[:6]:
                for _ in range(int(rng.integers(2, 6))):
                    key += 1
                    activities.append(Activity(key=key, customer=customer, item=cluster["items"][item_index], kind=ActivityKind.PLAY,
                                               occurred_at=START + timedelta(days=c % 5, minutes=3 * key)))
    Activity.objects.bulk_create(activities)
    cold = Item.objects.create(external_id="a-new", title="New hip-hop single", artist="Newcomer", genres=["hip-hop"],
                               moods=["energetic"], language="en")
    return {**clusters, "cold": cold}


def ids(objects) -> set[int]:
    return {o.pk for o in objects}


@pytest.fixture
def world(db, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    recommend._cache.clear()
    return make_world()


def played_by(customer) -> set[int]:
    return set(Activity.objects.filter(customer=customer, kind=ActivityKind.PLAY).values_list("item_id", flat=True))


@pytest.mark.parametrize("model", ["als", "iuf"])
def test_it_recommends_unplayed_items_of_the_customers_own_cluster(world, model):
    result = recommend.build(model)
    assert result["customers"] == 60
    a_items, b_items = ids(world["a"]["items"]), ids(world["b"]["items"])
    for cluster, own in (("a", a_items), ("b", b_items)):
        for customer in world[cluster]["customers"][:10]:
            rec = Recommendations.objects.get(customer=customer)
            assert rec.model_key == f"recsys:{model}"
            assert not set(rec.items) & played_by(customer)
            top = rec.items[:4]
            assert set(top) <= own | {world["cold"].pk}, (cluster, top)


@pytest.mark.parametrize("model", ["als", "iuf"])
def test_similar_items_of_a_cluster_item_come_from_that_cluster(world, model):
    recommend.build(model)
    a_items = ids(world["a"]["items"])
    for item in world["a"]["items"][:5]:
        similar = SimilarItems.objects.get(item=item)
        assert not similar.cold_start
        assert item.pk not in similar.items
        assert set(similar.items[:5]) <= a_items


def test_a_new_item_is_placed_near_the_cluster_its_tags_belong_to(world):
    recommend.build("als")
    placed = SimilarItems.objects.get(item=world["cold"])
    assert placed.cold_start
    assert placed.items and set(placed.items) <= ids(world["a"]["items"])


def test_the_build_registers_a_champion_with_metrics_and_a_map(world):
    result = recommend.build("als")
    version = ModelVersion.objects.get(key="recsys:als")
    assert version.status == ModelVersion.Status.CHAMPION and version.kind == "recsys"
    for name in ("recall10", "ndcg10", "popularity_recall10", "customers", "items"):
        assert name in version.metrics
    assert version.metrics["customers"] == 60 and version.metrics["items"] == 20
    assert 0 <= version.metrics["recall10"] <= 1
    points = version.report["map"]["points"]
    assert len(points) == 20 and {"x", "y", "title", "artist", "genre"} <= set(points[0])
    assert len(version.report["map"]["projection"]["components"]) == 2
    assert "ALS: recall@10" in recommend.summary(result) and "60 customers" in recommend.summary(result)
    recommend.build("als")
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.RETIRED
    assert ModelVersion.objects.get(key="recsys:als", version=2).status == ModelVersion.Status.CHAMPION


def test_customers_are_placed_on_the_map_beside_their_clusters_items(world):
    recommend.build("als")
    points = ModelVersion.objects.get(key="recsys:als").report["map"]["points"]
    a_ids = ids(world["a"]["items"])
    a_centre = np.mean([[p["x"], p["y"]] for p in points if p["id"] in a_ids], axis=0)
    b_centre = np.mean([[p["x"], p["y"]] for p in points if p["id"] not in a_ids], axis=0)
    here = recommend.customer_point(world["a"]["customers"][0].pk)
    spot = np.array([here["x"], here["y"]])
    assert np.linalg.norm(spot - a_centre) < np.linalg.norm(spot - b_centre)
    assert recommend.customer_point(10**9) is None


def test_a_rebuild_replaces_every_row_and_leaves_nothing_stale(world):
    recommend.build("als")
    gone = world["b"]["customers"][0]
    Activity.objects.filter(customer=gone).delete()
    recommend.build("iuf")
    assert not Recommendations.objects.filter(customer=gone).exists()
    assert set(Recommendations.objects.values_list("model_key", flat=True)) == {"recsys:iuf"}
    assert set(SimilarItems.objects.values_list("model_key", flat=True)) == {"recsys:iuf"}
    assert Recommendations.objects.count() == 59


def test_best_item_for_picks_the_highest_ranked_item_of_the_candidate_set(db):
    customer = Customer.objects.create(external_id="c")
    items = Item.objects.bulk_create(Item(external_id=f"i{i}", title=f"I{i}") for i in range(4))
    Recommendations.objects.create(customer=customer, items=[items[2].pk, items[0].pk, items[1].pk], scores=[3, 2, 1],
                                   model_key="recsys:als", built_at=START)
    assert recommend.best_item_for(customer.pk, [items[1].pk, items[0].pk]) == items[0].pk
    assert recommend.best_item_for(customer.pk, [items[3].pk]) is None
    assert recommend.best_item_for(customer.pk + 1, [items[0].pk]) is None


def test_build_refuses_a_platform_without_plays(db):
    with pytest.raises(ValueError, match="Nobody has played"):
        recommend.build("als")


def test_sessions_split_where_the_gap_exceeds_30_minutes(db):
    customer = Customer.objects.create(external_id="c")
    items = Item.objects.bulk_create(Item(external_id=f"i{i}", title=f"I{i}") for i in range(4))
    times = [0, 5, 10, 60, 70]  # minutes: a session of 3, then one of 2
    Activity.objects.bulk_create(Activity(key=n, customer=customer, item=items[n % 4], kind=ActivityKind.PLAY,
                                          occurred_at=START + timedelta(minutes=t)) for n, t in enumerate(times))
    item_ids = np.array(sorted(ids(items)))
    found = recommend.sessions(item_ids)
    assert [list(s) for s in found] == [[0, 1, 2], [3, 0]]


# -- pages ---------------------------------------------------------------------------------------------------


def test_the_customer_page_shows_the_recommendations_card(world, client_for, ann):
    recommend.build("als")
    customer = world["a"]["customers"][0]
    response = client_for(ann).get(reverse("customers:detail", args=[customer.pk]))
    assert b"Recommended for them" in response.content and b"recsys:als" in response.content
    top = Item.objects.get(pk=Recommendations.objects.get(customer=customer).items[0])
    assert top.title.encode() in response.content


def test_the_customer_page_says_when_there_are_no_recommendations(client_for, ann):
    customer = Customer.objects.create(external_id="c-9")
    response = client_for(ann).get(reverse("customers:detail", args=[customer.pk]))
    assert b"No recommendations yet" in response.content


def test_the_model_page_draws_the_embedding_map_and_places_a_customer(world, client_for, ann):
    recommend.build("als")
    version = ModelVersion.objects.get(key="recsys:als")
    client = client_for(ann)
    response = client.get(reverse("models:detail", args=[version.pk]))
    assert b"Embedding map" in response.content and b"recsys-map" in response.content
    dots = [p for ds in response.context["recsys"]["chart"]["data"]["datasets"] for p in ds["data"]]
    titles = set(Item.objects.values_list("title", flat=True))
    assert dots and all(p["name"].split(" — ")[0] in titles for p in dots)  # each dot's tooltip names its item
    customer = world["a"]["customers"][0]
    response = client.get(reverse("models:detail", args=[version.pk]), {"customer": customer.pk})
    placed = response.context["recsys"]["placed"]
    assert {"x": placed["x"], "y": placed["y"]} == pytest.approx(recommend.customer_point(customer.pk))
    assert f"customer {customer.pk}".encode() in response.content
    response = client.get(reverse("models:detail", args=[version.pk]), {"customer": "nobody"})
    assert response.status_code == 200 and response.context["recsys"]["placed"] is None
    assert b"not in this model" in response.content


def test_the_build_button_queues_a_recommendations_job(client_for, mark, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(mark).post(reverse("models:build_recommendations"))
    job = Job.objects.get(kind="recommendations")
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", args=[job.pk])
    assert job.status == Job.Status.QUEUED and job.created_by == mark
    assert len(callbacks) == 1


def test_analysts_cannot_build_and_get_is_refused(client_for, ann, alice, client):
    assert client_for(ann).post(reverse("models:build_recommendations")).status_code == 403
    client.force_login(alice)
    assert client.get(reverse("models:build_recommendations")).status_code == 405
    assert not Job.objects.exists()


# -- lookalike features ----------------------------------------------------------------------------------------


def test_lookalikes_learn_from_the_champions_embeddings_when_there_is_one(db, settings, tmp_path, mark,
                                                                         django_capture_on_commit_callbacks):
    """A trait only the embeddings carry (the fans' first dimension) becomes the lookalike's leading feature."""
    import io

    from audiences import actions
    from ml import registry
    from tests.audiences.test_lookalikes import make_base, seed_audience

    settings.MODEL_DIR = tmp_path / "models"
    recommend._cache.clear()
    customer_ids, fans = make_base(2500)
    rng = np.random.default_rng(1)
    users = rng.normal(0, 0.1, size=(len(customer_ids), 4)).astype(np.float32)
    users[:, 0] += np.array([1.0 if pk in fans else 0.0 for pk in customer_ids], dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, customer_ids=np.array(customer_ids[:-50]), item_ids=np.arange(3),  # the last 50: unknown, zeros
             user_vectors=users[:-50], item_vectors=np.zeros((3, 4), np.float32))
    registry.promote(registry.register_candidate("recsys:als", "recsys", buffer.getvalue(), suffix=".npz"))
    frame = recommend.embedding_features(np.array(customer_ids[-2:] + customer_ids[:1]), recommend.vectors())
    assert list(frame.columns) == ["emb_0", "emb_1", "emb_2", "emb_3"]
    assert not frame.iloc[:2].to_numpy().any() and frame.iloc[2].to_numpy().any()

    seed = seed_audience(fans)
    with django_capture_on_commit_callbacks(execute=True):
        audience = actions.create_lookalike(name="Like the fans", description="", seed=seed, size_pct=5, by=mark)
    from audiences.models import Lookalike

    top = [f["feature"] for f in Lookalike.objects.get(audience=audience).top_features]
    assert top[0] == "emb_0", top


@pytest.mark.parametrize("model", ["item2vec", "popularity"])
def test_the_other_models_build_too(world, model):
    result = recommend.build(model)
    assert result["customers"] == 60 and result["model"] == model
    customer = world["a"]["customers"][0]
    rec = Recommendations.objects.get(customer=customer)
    assert rec.items and not set(rec.items) & played_by(customer)
    assert ModelVersion.objects.get(key=f"recsys:{model}").status == ModelVersion.Status.CHAMPION
    assert SimilarItems.objects.filter(model_key=f"recsys:{model}").count() == 21


def test_an_unknown_model_is_refused(db):
    with pytest.raises(ValueError, match="Unknown recommender"):
        recommend.build("svd")


def test_the_models_page_offers_the_build_button_to_writers_only(client_for, mark, ann):
    assert b"Build recommendations" in client_for(mark).get(reverse("models:list")).content
    assert b"Build recommendations" not in client_for(ann).get(reverse("models:list")).content
