from django.urls import path

from . import views

jobs = ([
    path("", views.job_list, name="list"),
    path("<id:pk>/", views.job_detail, name="detail"),
], "jobs")

models = ([
    path("", views.model_list, name="list"),
    path("build-recommendations/", views.build_recommendations, name="build_recommendations"),
    path("<id:pk>/", views.model_detail, name="detail"),
    path("<id:pk>/promote/", views.model_promote, name="promote"),
    path("<id:pk>/roll-back/", views.model_roll_back, name="roll_back"),
], "models")
