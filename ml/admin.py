from django.contrib import admin

from .models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["title", "kind", "status", "progress", "attempts", "created_at", "finished_at", "created_by"]
    list_filter = ["kind", "status"]
    readonly_fields = ["result"]
