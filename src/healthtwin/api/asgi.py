"""ASGI entry point for `uvicorn healthtwin.api.asgi:app` (and for serve --workers N)."""
from __future__ import annotations

from ..config import Settings
from ..store import open_store
from .app import create_app

_settings = Settings.from_env()
app = create_app(open_store(_settings.database, _settings.data_dir), data_dir=_settings.data_dir)
