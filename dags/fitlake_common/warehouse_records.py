"""Small JSON records about the warehouse's state, kept beside it: what the last build covered, an
unfinished full refresh. Beside the DuckDB file, so that they go with it; for Spark, whose warehouse may be
on another machine, with the transform's dbt artefacts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

from fitlake_common import config


class WarehouseRecord:
    """Mixed into a dataclass: `kind` names its file."""

    kind: ClassVar[str]

    @classmethod
    def path(cls) -> Path:
        if config.DBT_ENGINE == "duckdb":
            return config.WAREHOUSE.with_name(f"{config.WAREHOUSE.name}.{cls.kind}.json")
        return config.DBT_TARGET_DIR.parent / f"{cls.kind}.{config.DBT_TARGET}.json"

    @classmethod
    def load(cls):
        try:
            return cls(**json.loads(cls.path().read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self) -> None:
        from ingestion.state import write_json_atomic

        write_json_atomic(self.path(), asdict(self))

    @classmethod
    def forget(cls) -> None:
        cls.path().unlink(missing_ok=True)
