"""An upload handler that stops a file upload early instead of spooling it all to disk first."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload


class LimitedUpload(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: refuses uploads from anonymous clients and past IMPORT_MAX_UPLOAD_MB.

    Django parses the body (for CSRF) before any view checks the login, so without this an
    anonymous client could make the server write an unbounded body to its temp folder. The
    view reads `request.upload_refused` to say why the file is missing.
    """

    def new_file(self, *args, **kwargs):
        # Checked when a file part starts (not in handle_raw_input, whose exceptions Django does
        # not catch): ordinary form posts without files are untouched.
        self.limit = settings.IMPORT_MAX_UPLOAD_MB * 1024 * 1024
        user = getattr(self.request, "user", None)
        if user is None or not user.is_authenticated:
            self.request.upload_refused = "Log in to upload files."
            raise StopUpload(connection_reset=True)
        if self.content_length and self.content_length > self.limit + 1024 * 1024:
            self.request.upload_refused = f"The file is larger than the {settings.IMPORT_MAX_UPLOAD_MB:,} MB limit."
            raise StopUpload(connection_reset=True)
        super().new_file(*args, **kwargs)

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.content_length = content_length
        return None

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > self.limit:
            self.request.upload_refused = f"The file is larger than the {settings.IMPORT_MAX_UPLOAD_MB:,} MB limit."
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None
