from django.urls import path

from . import api, views

campaigns = ([path("", views.campaign_list, name="list")], "campaigns")
budget = ([path("", views.budget, name="overview")], "budget")

api_urls = [
    path("decisions", api.DecisionCreate.as_view(), name="api-decisions"),
    path("events", api.EventBatch.as_view(), name="api-events"),
]
