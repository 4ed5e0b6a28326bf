"""Settings from the command line and the environment (HEALTHTWIN_*), shared by every entry point."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"


@dataclass
class Settings:
    data_dir: Path
    database: str | None
    # The URL clients reach the server at: token issuer and audience derive from it, never from Host.
    public_url: str = DEFAULT_PUBLIC_URL
    # True only with `serve --insecure-open`: every caller is anonymous and allowed (OpenPolicy).
    insecure_open: bool = False

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(Path(os.environ.get("HEALTHTWIN_DATA_DIR", "./data")).resolve(),
                   os.environ.get("HEALTHTWIN_DATABASE") or None,
                   (os.environ.get("HEALTHTWIN_PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/"),
                   os.environ.get("HEALTHTWIN_INSECURE_OPEN") == "1")

    def export(self) -> None:
        """Hands the settings to worker processes started by uvicorn."""
        os.environ["HEALTHTWIN_DATA_DIR"] = str(self.data_dir)
        if self.database:
            os.environ["HEALTHTWIN_DATABASE"] = self.database
        os.environ["HEALTHTWIN_PUBLIC_URL"] = self.public_url
        if self.insecure_open:
            os.environ["HEALTHTWIN_INSECURE_OPEN"] = "1"
        else:
            os.environ.pop("HEALTHTWIN_INSECURE_OPEN", None)
