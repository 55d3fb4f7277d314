from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from audiences import imports
from audiences.models import DataImport, ImportKind


class Command(BaseCommand):
    help = "Import customers, items or activities from a CSV or Parquet file (runs here, not on a worker)."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=ImportKind.values)
        parser.add_argument("path")
        parser.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                            help="map a field to a column of the file; repeat as needed (others are guessed)")
        parser.add_argument("--no-extra", action="store_true", help="drop unmapped columns instead of keeping them as attributes")

    def handle(self, kind, path, map, no_extra, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"No such file: {source}")
        try:
            fmt = imports.file_format(source.name)
            columns, _ = imports.inspect_file(source, fmt)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        mapping = imports.guess_mapping(kind, columns)
        for pair in map:
            field, sep, column = pair.partition("=")
            if not sep:
                raise CommandError(f"--map {pair!r}: use FIELD=COLUMN")
            mapping[field.strip()] = column.strip()
        errors = imports.check_mapping(kind, mapping, columns)
        if errors:
            raise CommandError("Column mapping: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.stderr.write("Mapping: " + ", ".join(f"{k}<-{v}" for k, v in mapping.items()))
        data_import = DataImport(kind=kind, original_name=source.name, file_format=fmt, columns=columns, mapping=mapping,
                                 status=DataImport.Status.RUNNING)
        with open(source, "rb") as fh:
            data_import.file.save(source.name, File(fh), save=True)

        def progress(fraction, message):
            self.stderr.write(f"\r{fraction:6.1%}  {message}", ending="")

        try:
            imports.run_import(data_import, progress=progress, keep_extra=not no_extra)
        except Exception:
            DataImport.objects.filter(pk=data_import.pk).update(status=DataImport.Status.FAILED)
            raise
        data_import.status = DataImport.Status.DONE
        data_import.save(update_fields=["status"])
        self.stderr.write("")
        self.stdout.write(
            f"{data_import.rows_ok:,} rows loaded ({data_import.rows_created:,} new), {data_import.rows_failed:,} rejected"
        )
        for e in data_import.errors[:20]:
            self.stdout.write(f"  row {e['row']}, column {e['column']}: {e['reason']} (value {e['value']!r})")
        if data_import.rows_failed > 20:
            self.stdout.write(f"  … all errors in {data_import.error_report.path}")
