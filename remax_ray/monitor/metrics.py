"""One metrics sink for every phase: ``metrics.jsonl`` (the source of truth), TensorBoard event files
beside it, and, when Ray is up, the dashboard's gauges and counters. The names and their meanings
are in ``remax_ray.monitor.metric_names``. The evaluations' sample tables go through it too
(``samples.jsonl`` and TensorBoard's text tab; :mod:`remax_ray.monitor.samples`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from remax_ray.monitor import samples as sample_log
from remax_ray.monitor import tb_events
from remax_ray.monitor.metric_names import (
    COUNTERS,
    GAUGES,
    CounterTracker,
    gauge_values,
    is_step_record,
    with_throughput,
)

log = logging.getLogger(__name__)

# The highest step an earlier driver of this run counted on the Ray counters before a resume cut its
# record; the next driver does not count it again (see CounterTracker).
COUNTED_FILE = "metrics_counted.json"
_warned: list[bool] = []


class MetricsSink:
    def __init__(self, output_dir: str | Path, run_name: str = "default", use_ray: bool = True,
                 tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tensorboard_dir = self.path.parent / tb_events.FOLDER
        self.run_name = run_name
        self.use_ray = use_ray
        self._gauges: dict[str, Any] = {}
        self._counters: dict[str, Any] = {}
        self.samples_path = self.path.parent / sample_log.FILE
        self._events: tb_events.EventWriter | None = None
        self._texts: tb_events.EventWriter | None = None
        if tensorboard and tb_events.available():
            self._events = tb_events.EventWriter(self.tensorboard_dir)
            self._texts = tb_events.EventWriter(self.tensorboard_dir / sample_log.TB_FOLDER)
        elif tensorboard and not _warned:
            _warned.append(True)  # once per process, not once per sink
            log.warning("tensorboard is not installed: no TensorBoard events in %s (pip install "
                        "tensorboard; metrics.jsonl and the dashboard are unaffected)", self.tensorboard_dir)
        self._tracker = CounterTracker.resuming(self.read(), self._counted_through()) if use_ray else None

    def log(self, step: int, values: dict[str, float]) -> None:
        values = with_throughput(values)
        record = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._events is not None:
            try:
                self._events.write(step, record)
            except Exception as err:  # noqa: BLE001 - a full disk or a broken install must not end a run
                log.warning("TensorBoard events stop here (%s: %s); metrics.jsonl goes on",
                            type(err).__name__, err)
                self._events = None
        if self.use_ray:
            self._export(step, values)

    def log_samples(self, step: int, records: list[dict[str, Any]]) -> None:
        """One evaluation's sample table: samples.jsonl, and one text per prompt in TensorBoard."""
        sample_log.append(self.samples_path, records)
        if self._texts is not None and records:
            try:
                self._texts.write_text(step, dict(sample_log.texts_by_step(records)[0][1]))
            except Exception as err:  # noqa: BLE001 - as for the scalars: samples.jsonl goes on
                log.warning("TensorBoard sample texts stop here (%s: %s); samples.jsonl goes on",
                            type(err).__name__, err)
                self._texts = None

    def _export(self, step: int, values: dict[str, float]) -> None:
        import ray
        from ray.util.metrics import Counter, Gauge

        if not ray.is_initialized():
            return
        tags = {"run": self.run_name}
        for name, value in gauge_values(values).items():
            if name not in self._gauges:
                key = name.removeprefix("remax_")
                meaning = GAUGES[key][1] if key in GAUGES else f"remax-ray {key}"
                self._gauges[name] = Gauge(name, description=meaning, tag_keys=("run",))
            self._gauges[name].set(value, tags=tags)
        for name, amount in self._tracker.increments(step, values).items():
            if name not in self._counters:
                self._counters[name] = Counter(name, description=COUNTERS[name], tag_keys=("run",))
            self._counters[name].inc(amount, tags=tags)

    def close(self) -> None:
        for writer in (self._events, self._texts):
            if writer is not None:
                writer.close()

    def count(self) -> int:
        """Records written so far (a checkpoint remembers it; a resume cuts back to it)."""
        return len(self.path.read_bytes().splitlines()) if self.path.exists() else 0

    def truncate(self, records: int) -> int:
        """Keep the first ``records`` lines, and the same in the TensorBoard events; returns how
        many later ones were dropped."""
        if not self.path.exists():
            return 0
        lines = self.path.read_bytes().splitlines(keepends=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(lines[:records]))
        tmp.replace(self.path)
        dropped = [r for r in map(_parsed, lines[records:]) if r is not None]
        if dropped:
            self._remember_counted(dropped)
            if self._events is not None:
                tb_events.rewrite(self.tensorboard_dir, self.read())
        self._truncate_samples()
        return max(0, len(lines) - records)

    def _truncate_samples(self) -> None:
        """Keep the sample tables of the evaluations metrics.jsonl kept (an evaluation writes its
        table just before its record), so one that runs again after a resume is listed once."""
        if not self.samples_path.exists():
            return
        evals = [r["step"] for r in self.read() if "eval_greedy_reward" in r]
        before = sample_log.read(self.samples_path)
        kept = sample_log.keep_through(self.samples_path, max(evals) if evals else None)
        if len(kept) < len(before) and self._texts is not None:
            self._texts.close()
            tb_events.rewrite_texts(self._texts.folder, sample_log.texts_by_step(kept))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def _counted_through(self) -> int:
        side = self.path.parent / COUNTED_FILE
        if not (side.exists() and self.path.exists()):  # a fresh run's folder never has one
            return -1
        return int(json.loads(side.read_text())["counted_through_step"])

    def _remember_counted(self, dropped: list[dict[str, Any]]) -> None:
        steps = [r["step"] for r in dropped if is_step_record(r)]
        through = max([self._counted_through(), *steps])
        if through >= 0:
            (self.path.parent / COUNTED_FILE).write_text(json.dumps({"counted_through_step": through}) + "\n")


def _parsed(line: bytes) -> dict[str, Any] | None:
    """A dropped line as a record; None for a blank one or one a kill tore mid-write."""
    try:
        return json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        return None


def _plain(v: Any) -> Any:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
