from django.urls import path

from . import views

jobs = ([
    path("", views.job_list, name="list"),
    path("<int:pk>/", views.job_detail, name="detail"),
], "jobs")

models = ([
    path("", views.model_list, name="list"),
    path("build-recommendations/", views.build_recommendations, name="build_recommendations"),
    path("<int:pk>/", views.model_detail, name="detail"),
    path("<int:pk>/promote/", views.model_promote, name="promote"),
    path("<int:pk>/roll-back/", views.model_roll_back, name="roll_back"),
], "models")
