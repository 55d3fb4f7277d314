# ruff: noqa: E402  (the id converter is registered before the apps' URL modules that use it are imported)
from django.urls import include, path, re_path, register_converter

from config.converters import IdConverter

register_converter(IdConverter, "id")

from django.contrib import admin
from django.contrib.auth import views as auth_views
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import views as account_views
from accounts.access import viewer_required
from accounts.permissions import AnyRoleOrToken
from config.views import api_not_found, healthz

from audiences import urls as audiences_urls
from marketing import urls as marketing_urls
from marketing import views as marketing_views
from ml import urls as ml_urls

urlpatterns = [
    path("", marketing_views.dashboard, name="dashboard"),
    path("login/", account_views.SignInView.as_view(), name="login"),
    path("login/code/", account_views.login_verify, name="login_verify"),
    path("account/two-factor/", account_views.two_factor, name="two_factor"),
    path("account/two-factor/remove/", account_views.two_factor_remove, name="two_factor_remove"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("customers/", include(audiences_urls.customers)),
    path("imports/", include(audiences_urls.imports)),
    path("audiences/", include(audiences_urls.audiences)),
    path("catalogue/", include(audiences_urls.catalogue)),
    path("campaigns/", include(marketing_urls.campaigns)),
    path("budget/", include(marketing_urls.budget)),
    path("jobs/", include(ml_urls.jobs)),
    path("models/", include(ml_urls.models)),
    path("team/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(audiences_urls.api_urls)),
    path("api/v1/", include(marketing_urls.api_urls)),
    path("healthz", healthz, name="healthz"),
    path("api/v1/schema/", SpectacularAPIView.as_view(permission_classes=[AnyRoleOrToken]), name="api-schema"),
    path("api/v1/schema", SpectacularAPIView.as_view(permission_classes=[AnyRoleOrToken]), name="api-schema-noslash"),
    # The browsable docs are a page for signed-in users (login redirect); tokens read the schema itself.
    path("api/v1/docs/", viewer_required(SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[AnyRoleOrToken])),
         name="api-docs"),
    # Last: any other API URL (an id that is not a number too) is a JSON 404, not the HTML page.
    re_path(r"^api/", api_not_found),
]

