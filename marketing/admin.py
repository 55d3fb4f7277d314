"""Django admin for the delivery objects: admins can set them up until the campaign pages land (issue 4)."""

from django.contrib import admin

from .models import Ad, Campaign, Channel, Decision, DeliveryPlan, FrequencyCap, Placement, PlanRule


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "cost_model", "unit_cost"]


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "channel", "slots"]


class AdInline(admin.StackedInline):
    model = Ad
    extra = 0
    filter_horizontal = ["placements"]
    raw_id_fields = ["promoted_item"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "goal", "status", "total_budget", "daily_budget", "starts_at", "ends_at"]
    list_filter = ["status", "goal"]
    inlines = [AdInline]


@admin.register(FrequencyCap)
class FrequencyCapAdmin(admin.ModelAdmin):
    list_display = ["__str__", "level", "max_count", "window", "min_gap_seconds"]
    list_filter = ["level"]


class PlanRuleInline(admin.TabularInline):
    model = PlanRule
    extra = 0
    filter_horizontal = ["ads"]
    raw_id_fields = ["audience"]


@admin.register(DeliveryPlan)
class DeliveryPlanAdmin(admin.ModelAdmin):
    list_display = ["placement", "rest", "epsilon"]
    filter_horizontal = ["rest_ads"]
    inlines = [PlanRuleInline]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ["id", "customer", "placement", "reason", "propensity", "created_at"]
    list_filter = ["reason", "placement"]
    raw_id_fields = ["customer", "rule"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False  # the log is written by the engine only

    def has_change_permission(self, request, obj=None) -> bool:
        return False
