from django.contrib import admin

from .models import ApiClient


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Tokens are issued on the Team page or by `manage.py create_api_client`, which show them once."""

    list_display = ["name", "token_hint", "scopes", "is_active", "last_used_at", "created_by"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["token_hint", "last_used_at", "created_at", "created_by"]
    fields = ["name", "scopes", "is_active", "token_hint", "last_used_at", "created_at", "created_by"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected clients' tokens")
    def revoke(self, request, queryset):
        queryset.update(is_active=False)
