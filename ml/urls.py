from django.urls import path

from . import views

jobs = ([
    path("", views.job_list, name="list"),
    path("<int:pk>/", views.job_detail, name="detail"),
], "jobs")

models = ([
    path("", views.model_list, name="list"),
], "models")
