"""Admins set up channels, placements, campaigns, caps and plans in Django admin until the campaign pages land."""

import pytest
from django.urls import reverse

from marketing.models import Channel


@pytest.mark.parametrize("model", ["channel", "placement", "campaign", "frequencycap", "deliveryplan", "decision"])
def test_admins_reach_every_delivery_list_and_marketers_do_not(client, alice, mark, model):
    url = reverse(f"admin:marketing_{model}_changelist")
    client.force_login(alice)
    assert client.get(url).status_code == 200
    client.force_login(mark)
    assert client.get(url).status_code in (302, 403)


def test_an_admin_creates_a_channel_and_the_decision_log_is_read_only(client, alice):
    client.force_login(alice)
    response = client.post(reverse("admin:marketing_channel_add"),
                           {"name": "Push", "kind": "push", "cost_model": "send", "unit_cost": "0.002"})
    assert response.status_code == 302 and str(Channel.objects.get().unit_cost) == "0.0020"
    assert client.get(reverse("admin:marketing_decision_add")).status_code == 403
