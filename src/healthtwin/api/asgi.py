"""ASGI entry point for `uvicorn healthtwin.api.asgi:app` (and for serve --workers N).

Secure by default: the SMART policy, unless HEALTHTWIN_INSECURE_OPEN=1 (set only by `serve --insecure-open`).
"""
from __future__ import annotations

import logging
import os

from ..config import Settings
from ..runtime import settle_after_start
from ..store import open_store
from .app import create_app
from ..request import OpenPolicy

_settings = Settings.from_env()
_policy = None
if _settings.insecure_open:
    logging.getLogger("healthtwin").error("INSECURE: --insecure-open: every caller is anonymous and allowed "
                                          "everything (OpenPolicy). Never expose this server.")
    _policy = OpenPolicy()
def _externals() -> list:
    """An external OpenID Connect provider from HEALTHTWIN_OIDC_ISSUER and HEALTHTWIN_OIDC_JWKS (an https
    JWKS URL, fetched and cached, or a path to a JWKS file); HEALTHTWIN_OIDC_AUDIENCE optionally."""
    issuer, jwks = os.environ.get("HEALTHTWIN_OIDC_ISSUER"), os.environ.get("HEALTHTWIN_OIDC_JWKS")
    if not issuer or not jwks:
        return []
    import orjson

    from ..security.tokens import ExternalIssuer, JWKSFetcher
    if jwks.startswith("https://"):
        fetcher = JWKSFetcher(jwks)
        fetcher.prime()
        source = fetcher
    else:
        with open(jwks, "rb") as fp:
            source = orjson.loads(fp.read())
    return [ExternalIssuer(issuer, source, audience=os.environ.get("HEALTHTWIN_OIDC_AUDIENCE") or None)]


_refresh = os.environ.get("HEALTHTWIN_ANALYTICS_REFRESH_MINUTES")
_rate_text = os.environ.get("HEALTHTWIN_RATE_LIMIT", "50,200")
_rate = None if _rate_text == "off" else tuple(float(x) for x in _rate_text.split(","))
app = create_app(open_store(_settings.database, _settings.data_dir), policy=_policy, data_dir=_settings.data_dir,
                 public_url=_settings.public_url, analytics_dir=_settings.data_dir,
                 analytics_refresh_minutes=float(_refresh) if _refresh else None, rate=_rate,
                 analytics_snapshots=int(os.environ.get("HEALTHTWIN_WORKERS") or 1) > 1,
                 externals=_externals(), audit_feed=os.environ.get("HEALTHTWIN_AUDIT_FEED") or None,
                 audit_feed_ca=os.environ.get("HEALTHTWIN_AUDIT_FEED_CA") or None)
settle_after_start()
