"""A campaign-model job whose worker died after registering its candidate finishes it on redelivery, never a second one."""

import pytest

from marketing import tasks
from ml import registry
from ml.models import Job, ModelVersion
from tests.marketing.test_learning import START, traffic, world  # noqa: F401  (the fixture)


def test_a_retried_training_finishes_the_candidate_its_killed_attempt_registered(world, monkeypatch):  # noqa: F811
    traffic(world, 1500, start=START)
    campaign = world["campaign"]
    job = Job.objects.create(kind="campaign_model", title="Model")
    promote = registry.promote

    def killed(*args, **kwargs):
        raise RuntimeError("the worker died here")

    monkeypatch.setattr(registry, "promote", killed)  # the first attempt stops between registering and promoting
    with pytest.raises(RuntimeError):
        tasks.train_campaign_model(job.pk, campaign.pk)
    assert ModelVersion.objects.filter(key=f"campaign:{campaign.pk}").count() == 1

    monkeypatch.setattr(registry, "promote", promote)
    tasks.train_campaign_model(job.pk, campaign.pk)  # the redelivered message

    versions = ModelVersion.objects.filter(key=f"campaign:{campaign.pk}")
    assert versions.count() == 1
    assert versions.get().status == ModelVersion.Status.CHAMPION
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 2
    assert job.result["promoted"] and job.result["version"] == versions.get().pk


def test_a_new_job_still_trains_a_new_candidate(world):  # noqa: F811
    traffic(world, 1500, start=START)
    campaign = world["campaign"]
    for _ in range(2):
        job = Job.objects.create(kind="campaign_model", title="Model")
        tasks.train_campaign_model(job.pk, campaign.pk)
    assert ModelVersion.objects.filter(key=f"campaign:{campaign.pk}").count() == 2
