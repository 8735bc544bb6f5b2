"""One metrics sink for every phase: a jsonl file, plus Ray dashboard gauges when Ray is up."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsSink:
    def __init__(self, output_dir: str | Path, run_name: str = "default", use_ray: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_name = run_name
        self.use_ray = use_ray
        self._gauges: dict[str, Any] = {}

    def log(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.use_ray:
            self._export(values)

    def _export(self, values: dict[str, float]) -> None:
        import ray
        from ray.util.metrics import Gauge

        if not ray.is_initialized():
            return
        for key, value in values.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            if key not in self._gauges:
                # Prometheus names allow [a-zA-Z0-9_:] only.
                name = "remax_" + "".join(c if c.isalnum() else "_" for c in key)
                self._gauges[key] = Gauge(name, description=f"remax-ray {key}", tag_keys=("run",))
            self._gauges[key].set(float(value), tags={"run": self.run_name})

    def count(self) -> int:
        """Records written so far (a checkpoint remembers it; a resume cuts back to it)."""
        return len(self.path.read_bytes().splitlines()) if self.path.exists() else 0

    def truncate(self, records: int) -> int:
        """Keep the first ``records`` lines; returns how many later ones were dropped."""
        if not self.path.exists():
            return 0
        lines = self.path.read_bytes().splitlines(keepends=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(lines[:records]))
        tmp.replace(self.path)
        return max(0, len(lines) - records)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def _plain(v: Any) -> Any:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
