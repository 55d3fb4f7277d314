from django.contrib import admin

from .models import Customer, DataImport, Item, PersonaSettings


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["external_id", "birth_year", "gender", "region", "city_tier", "is_subscriber", "signup_date"]
    list_filter = ["is_subscriber", "gender", "city_tier"]
    search_fields = ["external_id"]
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "kind", "title", "artist", "language", "release_date", "price"]
    list_filter = ["kind", "language"]
    search_fields = ["external_id", "title", "artist"]
    show_full_result_count = False


@admin.register(DataImport)
class DataImportAdmin(admin.ModelAdmin):
    list_display = ["original_name", "kind", "status", "rows_total", "rows_ok", "rows_failed", "created_at", "created_by"]
    list_filter = ["kind", "status"]
    readonly_fields = ["job", "errors"]


@admin.register(PersonaSettings)
class PersonaSettingsAdmin(admin.ModelAdmin):
    list_display = ["half_life_days", "loyal_revenue_share", "active_revenue_share", "top_n", "last_built_at"]
