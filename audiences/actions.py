"""State changes of the audiences app. HTML views, API views and commands call these."""

from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from accounts import audit
from ml.models import Job, enqueue, send_on_commit

from . import imports
from .models import DataImport, PersonaSettings


class ImportRejected(ValueError):
    """The file cannot be imported at all (unreadable, empty, wrong type); says why."""


def receive_upload(upload: UploadedFile, kind: str, *, by) -> DataImport:
    """Store an uploaded file, read its header and first rows, and guess the column mapping.

    Not one transaction: copying and reading a large file must not hold SQLite's write lock;
    the row is written last, and the file is removed if that fails.
    """
    try:
        fmt = imports.file_format(upload.name)
    except ValueError as exc:
        raise ImportRejected(str(exc)) from None
    data_import = DataImport(kind=kind, original_name=Path(upload.name).name[:255], file_format=fmt, created_by=by)
    data_import.file.save(Path(upload.name).name, upload, save=False)
    try:
        columns, preview = imports.inspect_file(Path(data_import.file.path), fmt)
    except ValueError as exc:
        data_import.file.delete(save=False)
        raise ImportRejected(str(exc)) from None
    data_import.columns = columns
    data_import.preview = [[str(v)[:60] for v in row] for row in preview]
    data_import.mapping = imports.guess_mapping(kind, columns)
    try:
        data_import.save()
    except Exception:
        data_import.file.delete(save=False)
        raise
    return data_import


@transaction.atomic
def queue_import(data_import: DataImport, mapping: dict[str, str], *, by, keep_extra: bool = True) -> Job:
    """Fix the mapping and hand the file to a worker; the job row shows its progress."""
    errors = imports.check_mapping(data_import.kind, mapping, data_import.columns)
    if errors:
        raise ValueError(errors)
    # Claimed atomically: a double-submitted mapping form must not queue the file twice.
    if not DataImport.objects.filter(pk=data_import.pk, status=DataImport.Status.MAPPING).update(status=DataImport.Status.QUEUED):
        raise ImportRejected("This file has already been sent for import.")
    from .tasks import run_import

    job = Job.objects.create(kind="import", title=f"Import {data_import.get_kind_display().lower()} from {data_import.original_name}", created_by=by)
    data_import.mapping = {k: v for k, v in mapping.items() if v}
    data_import.keep_extra = keep_extra
    data_import.job = job
    data_import.status = DataImport.Status.QUEUED
    data_import.save(update_fields=["mapping", "keep_extra", "job", "status"])
    enqueue(run_import, job, data_import.pk)
    return job


def persona_job(*, full: bool, by) -> Job:
    return Job.objects.create(kind="personas", title="Rebuild all personas" if full else "Update personas", created_by=by)


@transaction.atomic
def queue_persona_build(*, full: bool, by) -> Job:
    from .tasks import build_personas

    job = persona_job(full=full, by=by)
    send_on_commit(job, lambda: build_personas.apply_async(kwargs={"job_id": job.pk, "full": full}))
    return job


@transaction.atomic
def update_persona_settings(settings_obj: PersonaSettings, *, fields: list[str], by) -> PersonaSettings:
    before = audit.stored(settings_obj, fields)
    settings_obj.save(update_fields=fields)
    audit.record_save("personas", settings_obj, before, by=by, fields=fields, label="Persona settings")
    return settings_obj


AUDIENCE_FIELDS = ["name", "description", "kind", "rule"]


@transaction.atomic
def save_audience(audience, *, by):
    """Save an audience and materialise its membership (one INSERT … SELECT of the compiled rule)."""
    before = audit.stored(audience, AUDIENCE_FIELDS)
    if audience.created_by_id is None:
        audience.created_by = by
    audience.save()
    audience = refresh_membership(audience)
    audit.record_save("audience", audience, before, by=by, fields=AUDIENCE_FIELDS)
    return audience


@transaction.atomic
def refresh_audience(audience, *, by):
    """An operator's refresh of a rule or list audience (the hourly task calls refresh_membership itself)."""
    before = audience.size
    audience = refresh_membership(audience)
    audit.record("audience.refresh", audience, by=by, changes={"size": [before, audience.size]} if before != audience.size else {})
    return audience


@transaction.atomic
def refresh_membership(audience):
    """Replace the audience's snapshot: who the rule selects now, or a lookalike's top ranks at its size.

    One INSERT … SELECT either way; uploaded lists keep their members. A lookalike leaves out
    today's seed members even when they were not in the seed at training time.
    """
    from django.db import connection
    from django.utils import timezone

    from .models import Audience, AudienceMember, Customer, LookalikeScore

    # One refresh of an audience at a time (the hourly task, a save, a lookalike build may overlap),
    # and what it reads (a lookalike's size) is read under that lock, fresh.
    locked = Audience.objects.select_for_update().get(pk=audience.pk)
    source = None
    if locked.kind == Audience.Kind.RULES:
        source = Customer.objects.in_audience(locked).order_by().values("id")
    elif locked.kind == Audience.Kind.LOOKALIKE:
        lookalike = locked.lookalike
        seed = AudienceMember.objects.filter(audience_id=lookalike.seed_id).values("customer_id")
        source = (LookalikeScore.objects.filter(lookalike=lookalike, rank__lte=lookalike.selected)
                  .exclude(customer_id__in=seed).order_by().values("customer_id"))
    if source is not None:
        AudienceMember.objects.filter(audience=locked).delete()
        sql, params = source.query.sql_with_params()
        table = connection.ops.quote_name(AudienceMember._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} (audience_id, customer_id) SELECT %s, q.* FROM ({sql}) q", [locked.pk, *params])
    audience.size = AudienceMember.objects.filter(audience=locked).count()
    audience.size_at = timezone.now()
    Audience.objects.filter(pk=locked.pk).update(size=audience.size, size_at=audience.size_at)
    return audience


@transaction.atomic
def create_lookalike(*, name: str, description: str, seed, size_pct: float, by):
    """A lookalike audience of `seed`; a worker trains it (the returned audience has no members yet)."""
    from .models import Audience, Lookalike

    audience = Audience.objects.create(name=name, description=description, kind=Audience.Kind.LOOKALIKE, created_by=by)
    lookalike = Lookalike.objects.create(audience=audience, seed=seed, size_pct=size_pct)
    queue_lookalike_training(lookalike, by=by)
    audit.record("audience.create", audience, by=by, changes={
        "name": [None, name], "kind": [None, audience.kind], "seed": [None, seed.name], "size_pct": [None, size_pct]})
    return audience


@transaction.atomic
def queue_lookalike_training(lookalike, *, by) -> Job:
    """(Re)train a lookalike on its seed as it is now and rescore the base; the job shows progress."""
    from .models import Lookalike
    from .tasks import train_lookalike

    # Locked, so two requests (or the nightly retrain and a click) cannot both queue a training:
    # two builds of one lookalike at once would fight over its ranked scores.
    lookalike = Lookalike.objects.select_for_update(of=("self",)).select_related("audience", "job").get(pk=lookalike.pk)
    if lookalike.job is not None and not lookalike.job.is_finished:
        return lookalike.job
    job = Job.objects.create(kind="lookalike", title=f"Train lookalike “{lookalike.audience.name}”", created_by=by)
    lookalike.job = job
    lookalike.save(update_fields=["job"])
    enqueue(train_lookalike, job, lookalike.pk)
    return job


@transaction.atomic
def resize_lookalike(lookalike, size_pct: float, *, by):
    """Take the top `size_pct` % of the ranked candidates: no retraining, one INSERT … SELECT."""
    from .models import Lookalike

    before = Lookalike.objects.filter(pk=lookalike.pk).values_list("size_pct", flat=True).first()
    Lookalike.objects.filter(pk=lookalike.pk).update(size_pct=size_pct)
    lookalike.size_pct = size_pct
    size_before = lookalike.audience.size
    audience = refresh_membership(lookalike.audience)
    audit.record("audience.resize", audience, by=by, changes={"size_pct": [before, size_pct], "size": [size_before, audience.size]})
    return audience


def create_list_audience(*, name: str, description: str, upload, by) -> tuple:
    """An audience from a file of customer external ids (first column; a header is skipped).

    Known ids become members; unknown ones are returned, so the operator sees them.
    """
    import csv
    import io

    from . import bulk
    from .models import Audience, AudienceMember, Customer

    text = io.TextIOWrapper(upload, encoding="utf-8-sig", errors="replace")
    ids = [row[0].strip() for row in csv.reader(text) if row and row[0].strip()]
    found = bulk.lookup_ids(Customer, ids)
    if ids and ids[0] not in found and len(ids) > 1:
        ids = ids[1:]  # a header such as "customer_id"
    unknown = [i for i in dict.fromkeys(ids) if i not in found]
    with transaction.atomic():
        audience = Audience.objects.create(name=name, description=description, kind=Audience.Kind.LIST, created_by=by)
        members = {found[i] for i in ids if i in found}
        AudienceMember.objects.bulk_create([AudienceMember(audience=audience, customer_id=pk) for pk in members], batch_size=5000)
        refresh_membership(audience)
        audit.record("audience.create", audience, by=by, note=f"{len(unknown):,} unknown ids left out" if unknown else "",
                     changes={"name": [None, name], "kind": [None, audience.kind], "size": [None, audience.size]})
    return audience, unknown
