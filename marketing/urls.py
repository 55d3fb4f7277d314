from django.urls import path

from . import api, views

campaigns = ([
    path("", views.campaign_list, name="list"),
    path("new/", views.campaign_edit, name="new"),
    path("<id:pk>/", views.campaign_detail, name="detail"),
    path("<id:pk>/edit/", views.campaign_edit, name="edit"),
    path("<id:pk>/status/", views.campaign_status, name="status"),
    path("<id:pk>/train/", views.campaign_train, name="train"),
    path("<id:pk>/train-uplift/", views.campaign_train_uplift, name="train_uplift"),
    path("<id:campaign_pk>/ads/new/", views.ad_edit, name="ad_new"),
    path("ads/<id:pk>/edit/", views.ad_edit, name="ad_edit"),
    path("caps/new/", views.cap_new, name="cap_new"),
    path("caps/<id:pk>/delete/", views.cap_delete, name="cap_delete"),
    path("delivery/", views.delivery, name="delivery"),
    path("delivery/channels/new/", views.channel_edit, name="channel_new"),
    path("delivery/channels/<id:pk>/edit/", views.channel_edit, name="channel_edit"),
    path("delivery/placements/new/", views.placement_edit, name="placement_new"),
    path("delivery/placements/<id:pk>/edit/", views.placement_edit, name="placement_edit"),
    path("delivery/placements/<id:pk>/plan/", views.plan_edit, name="plan"),
    path("decisions/", views.decision_log, name="decisions"),
    path("roi/", views.roi_report, name="roi"),
    path("roi/csv/", views.roi_csv, name="roi_csv"),
    path("simulate/", views.simulate, name="simulate"),
    path("simulate/customers/", views.simulate_customers, name="simulate_customers"),
], "campaigns")
budget = ([
    path("", views.budget.overview, name="overview"),
    path("upload/", views.budget.upload, name="upload"),
    path("platform/", views.budget.platform, name="platform"),
    path("datasets/<id:pk>/", views.budget.dataset_detail, name="dataset"),
    path("datasets/<id:pk>/fit/", views.budget.dataset_fit, name="fit"),
    path("datasets/<id:pk>/channels/", views.budget.dataset_channels, name="channels"),
    path("models/<id:pk>/", views.budget.model_detail, name="model"),
    path("models/<id:pk>/allocate/", views.budget.model_allocate, name="allocate"),
    path("scenarios/<id:pk>/", views.budget.scenario_detail, name="scenario"),
    path("scenarios/<id:pk>/apply/", views.budget.scenario_apply, name="apply"),
    path("compare/", views.budget.compare, name="compare"),
], "budget")

api_urls = [
    path("decisions", api.DecisionCreate.as_view(), name="api-decisions"),
    path("events", api.EventBatch.as_view(), name="api-events"),
    path("spend", api.SpendBatch.as_view(), name="api-spend"),
    path("campaigns/<id:pk>/delivery-list", api.DeliveryListView.as_view(), name="api-delivery-list"),
]
