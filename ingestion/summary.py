"""Run summaries: what a landing job did, for logs, the CLI and Airflow XCom."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class LandingSummary:
    source: str  # "sql" or "kafka"
    entity: str  # table or topic
    rows: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    paths: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.detail.items())
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.source}:{self.entity}: {self.rows} rows in {self.files} file(s), "
            f"{self.bytes / 1e6:.2f} MB, {self.seconds:.2f}s ({rate:,.0f} rows/s) {extra}".rstrip()
        )
