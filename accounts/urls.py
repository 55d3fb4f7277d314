from django.urls import path

from . import views

app_name = "team"
urlpatterns = [
    path("", views.team, name="overview"),
    path("users/new/", views.user_new, name="user_new"),
    path("users/<id:pk>/", views.user_edit, name="user_edit"),
    path("clients/new/", views.client_new, name="client_new"),
    path("clients/<id:pk>/revoke/", views.client_revoke, name="client_revoke"),
    path("audit/", views.audit_log, name="audit"),
]
