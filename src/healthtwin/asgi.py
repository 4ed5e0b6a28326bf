"""ASGI entry point for `uvicorn healthtwin.asgi:app` (and for serve --workers N), built by the composition root.

Secure by default: the SMART policy, unless HEALTHTWIN_INSECURE_OPEN=1 (set only by `serve --insecure-open`).
"""
from __future__ import annotations

import logging
import os

from .api.proxies import TrustedProxies
from .composition import AppSettings, build_app
from .config import Settings
from .request import OpenPolicy
from .runtime import settle_after_start
from .security.storage import open_store

_settings = Settings.from_env()
_policy = None
if _settings.insecure_open:
    logging.getLogger("healthtwin").error("INSECURE: --insecure-open: every caller is anonymous and allowed "
                                          "everything (OpenPolicy). Never expose this server.")
    _policy = OpenPolicy()
app = build_app(open_store(_settings.database, _settings.data_dir), AppSettings.from_env(), policy=_policy)
# Outside everything: forwarded headers only from `serve --forwarded-allow-ips` (api/proxies.py says why).
app = TrustedProxies(app, _settings.public_url, os.environ.get("HEALTHTWIN_FORWARDED_ALLOW_IPS") or None)
settle_after_start()
