from django.urls import path

from . import api, views

customers = ([
    path("", views.customer_list, name="list"),
    path("<id:pk>/", views.customer_detail, name="detail"),
    path("personas/", views.persona_settings, name="persona_settings"),
    path("personas/rebuild/", views.persona_rebuild, name="persona_rebuild"),
], "customers")

imports = ([
    path("", views.import_list, name="list"),
    path("new/", views.import_new, name="new"),
    path("<id:pk>/", views.import_detail, name="detail"),
    path("<id:pk>/errors.csv", views.import_errors, name="errors"),
], "imports")

audiences = ([
    path("", views.audience_list, name="list"),
    path("new/", views.audience_edit, name="new"),
    path("preview/", views.audience_preview, name="preview"),
    path("builder/", views.audience_builder, name="builder"),
    path("upload/", views.audience_upload, name="upload"),
    path("lookalike/", views.lookalike_new, name="lookalike_new"),
    path("<id:pk>/size/", views.lookalike_resize, name="lookalike_resize"),
    path("<id:pk>/refresh/", views.audience_refresh, name="refresh"),
    path("<id:pk>/", views.audience_detail, name="detail"),
    path("<id:pk>/edit/", views.audience_edit, name="edit"),
    path("<id:pk>/why/<id:customer_pk>/", views.audience_why, name="why"),
    path("analytics/", views.analytics, name="analytics"),
    path("analytics.csv", views.analytics_csv, name="analytics_csv"),
], "audiences")

catalogue = ([
    path("", views.catalogue_list, name="list"),
    path("audio/train/", views.audio_train, name="audio_train"),
    path("<id:pk>/", views.item_detail, name="detail"),
    path("<id:pk>/audio/", views.item_audio_upload, name="audio_upload"),
], "catalogue")

api_urls = [
    path("customers", api.CustomerList.as_view(), name="api-customers"),
    path("customers/<str:external_id>", api.CustomerDetail.as_view(), name="api-customer"),
    path("items", api.ItemList.as_view(), name="api-items"),
    path("activities", api.ActivityBatch.as_view(), name="api-activities"),
    path("jobs/<id:pk>", api.JobDetail.as_view(), name="api-job"),
    path("audiences", api.AudienceList.as_view(), name="api-audiences"),
    path("audiences/<id:pk>/members", api.AudienceMembers.as_view(), name="api-audience-members"),
    path("audiences/<id:pk>/members.ndjson", api.AudienceMembersStream.as_view(), name="api-audience-members-stream"),
    path("audiences/<id:pk>/why/<str:external_id>", api.AudienceWhy.as_view(), name="api-audience-why"),
]
