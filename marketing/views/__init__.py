"""The marketing app's pages, one module per area; urls.py reaches them through this package."""

from .campaign_pages import (  # noqa: F401
    ad_edit,
    campaign_detail,
    campaign_edit,
    campaign_list,
    campaign_status,
    campaign_train,
    campaign_train_uplift,
    cap_delete,
    cap_new,
)
from . import budget  # noqa: F401
from .dashboard import dashboard  # noqa: F401
from .decision_log import decision_log  # noqa: F401
from .delivery_pages import channel_edit, delivery, placement_edit, plan_edit, simulate, simulate_customers  # noqa: F401
from .roi import roi_csv, roi_report  # noqa: F401
