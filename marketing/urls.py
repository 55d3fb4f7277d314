from django.urls import path

from . import views

campaigns = ([path("", views.campaign_list, name="list")], "campaigns")
budget = ([path("", views.budget, name="overview")], "budget")
