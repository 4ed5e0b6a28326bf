"""Settings from the command line and the environment (HEALTHTWIN_*), shared by every entry point."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Settings:
    data_dir: Path
    database: str | None

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(Path(os.environ.get("HEALTHTWIN_DATA_DIR", "./data")).resolve(),
                   os.environ.get("HEALTHTWIN_DATABASE") or None)

    def export(self) -> None:
        """Hands the settings to worker processes started by uvicorn."""
        os.environ["HEALTHTWIN_DATA_DIR"] = str(self.data_dir)
        if self.database:
            os.environ["HEALTHTWIN_DATABASE"] = self.database
