"""The audiences app's pages, one module per area; urls.py reaches them through this package."""

from .audience_pages import (  # noqa: F401
    audience_builder,
    audience_detail,
    audience_edit,
    audience_list,
    audience_preview,
    audience_refresh,
    audience_upload,
    audience_why,
)
from .customers import customer_detail, customer_kpis, customer_list, persona_rebuild, persona_settings  # noqa: F401
from .data_imports import import_detail, import_errors, import_list, import_new  # noqa: F401
from .analytics import analytics, analytics_csv  # noqa: F401
from .lookalikes import lookalike_new, lookalike_resize  # noqa: F401
from .catalogue import audio_train, catalogue_list, item_audio_upload, item_detail  # noqa: F401
