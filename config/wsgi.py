"""The WSGI application, warmed: a web worker loads at start-up what its first requests would otherwise load.

The URLconf (and through it the API and the decision engine) and the libraries a champion model
needs (ml.serving.warm) are imported here, so gunicorn — which recycles each worker every
`max_requests` — starts workers that answer their first model-ranked decision in milliseconds, not
after ~2 s of imports; with `preload_app` (docker/gunicorn.conf.py) the master imports them once
and every worker it forks shares them. WSGI_WARM=false skips this.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

if os.environ.get("WSGI_WARM", "true").strip().lower() not in ("false", "0", "no"):
    from django.urls import get_resolver

    from ml import serving

    get_resolver().url_patterns  # noqa: B018 (imports every view module)
    serving.warm()
