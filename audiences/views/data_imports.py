"""Data import pages: upload, column mapping, progress, error report."""

from __future__ import annotations


from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import viewer_required, writer_required

from .. import actions
from ..forms import MappingForm, UploadForm
from ..imports import FIELDS
from ..models import DataImport

# -- imports -------------------------------------------------------------------------------------


@require_GET
@viewer_required
def import_list(request):
    imports = DataImport.objects.select_related("job", "created_by")
    page = Paginator(imports, 20).get_page(request.GET.get("page"))
    return render(request, "audiences/import_list.html", {"page_obj": page, "query": "", "target": "#imports"})


@require_http_methods(["GET", "POST"])
@writer_required
def import_new(request):
    form = UploadForm(request.POST or None, request.FILES or None, initial={"kind": request.GET.get("kind", "customers")})
    if getattr(request, "upload_refused", None):
        form.add_error("file", request.upload_refused)
    if request.method == "POST" and form.is_valid():
        try:
            data_import = actions.receive_upload(form.cleaned_data["file"], form.cleaned_data["kind"], by=request.user)
        except actions.ImportRejected as exc:
            form.add_error("file", str(exc))
        else:
            return redirect("imports:detail", pk=data_import.pk)
    return render(request, "audiences/import_new.html", {"form": form, "field_groups": list(FIELDS.items())}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@viewer_required
def import_detail(request, pk: int):
    data_import = get_object_or_404(DataImport.objects.select_related("job"), pk=pk)
    if request.method == "POST":
        return _start_import(request, data_import)
    form = MappingForm(data_import=data_import) if data_import.status == DataImport.Status.MAPPING else None
    context = {"imp": data_import, "form": form, "job": data_import.job}
    if request.htmx:
        return render(request, "audiences/import_detail.html#status", context)
    return render(request, "audiences/import_detail.html", context)


@writer_required
def _start_import(request, data_import: DataImport):
    if data_import.status != DataImport.Status.MAPPING:
        messages.warning(request, "This file has already been sent for import.")
        return redirect("imports:detail", pk=data_import.pk)
    form = MappingForm(request.POST, data_import=data_import)
    if form.is_valid():
        try:
            actions.queue_import(data_import, form.mapping(), by=request.user,
                                 keep_extra=form.cleaned_data.get("keep_extra", False))
        except actions.ImportRejected as exc:
            messages.warning(request, str(exc))
            return redirect("imports:detail", pk=data_import.pk)
        except ValueError as exc:
            for name, reason in exc.args[0].items():
                form.add_error(name if name in form.fields else None, reason)
        else:
            return redirect("imports:detail", pk=data_import.pk)
    return render(request, "audiences/import_detail.html", {"imp": data_import, "form": form, "job": None}, status=400)


@require_GET
@viewer_required
def import_errors(request, pk: int):
    data_import = get_object_or_404(DataImport, pk=pk)
    if not data_import.error_report:
        raise Http404("This import has no rejected rows.")
    return FileResponse(data_import.error_report.open("rb"), as_attachment=True, filename=f"import-{pk}-errors.csv")
