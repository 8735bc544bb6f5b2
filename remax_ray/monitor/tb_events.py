"""TensorBoard event files for a run (``<output_dir>/tensorboard/``), written by the metrics sink.

One ``Event`` per metrics record (a ``Summary`` holding every number of the record, at the record's
step), so the i-th summary event of the folder is the i-th line of metrics.jsonl. A resume cuts
metrics.jsonl back to its checkpoint; ``rewrite`` then rebuilds the folder from the kept lines. That
is exact for every reader: TensorBoard's ``purge_step`` (a SessionLog.START event) is honoured by the
Python loader but not by the Rust data server that ``tensorboard --logdir`` uses by default, and it
would also hide the evaluation a checkpoint logged at its own step.

Text events (the sample tables of :mod:`remax_ray.monitor.samples`) go to a folder of their own
(``tensorboard/samples/``, a second run in TensorBoard's list) so that the summary events of the
scalar folder stay one per metrics record.

Needs the ``tensorboard`` package (constraints/cpu-lock.txt pins it); without it ``available()`` is
False and the sink writes no events.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from remax_ray.monitor.metric_names import is_number, tensorboard_tag

FOLDER = "tensorboard"
_PATTERN = "events.out.tfevents.*"


def available() -> bool:
    try:
        import tensorboard.summary.writer.event_file_writer  # noqa: F401
    except ImportError:
        return False
    return True


def _event(step: int, record: dict[str, Any], wall_time: float):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    values = [summary_pb2.Summary.Value(tag=tensorboard_tag(k), simple_value=float(v))
              for k, v in record.items() if k != "step" and is_number(v)]
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=values))


def _text_event(step: int, texts: dict[str, str], wall_time: float):
    """One event holding a Markdown text per tag, as TensorBoard's text plugin reads them (a scalar
    string tensor with the plugin name "text")."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
    values = [summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        string_val=[text.encode("utf-8")])) for tag, text in texts.items()]
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=values))


class EventWriter:
    """Appends one event per record to a new event file in ``folder``, created on the first write."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._writer = None

    def write(self, step: int, record: dict[str, Any], wall_time: float | None = None) -> None:
        self._add(_event(step, record, time.time() if wall_time is None else wall_time))

    def write_text(self, step: int, texts: dict[str, str], wall_time: float | None = None) -> None:
        """``{tag: Markdown}`` for TensorBoard's text tab, at ``step``."""
        self._add(_text_event(step, texts, time.time() if wall_time is None else wall_time))

    def _add(self, event: Any) -> None:
        if self._writer is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self.folder.mkdir(parents=True, exist_ok=True)
            self._writer = EventFileWriter(str(self.folder))
        self._writer.add_event(event)
        # A step takes seconds: flushing each record keeps a live TensorBoard current and loses
        # nothing when the driver is killed.
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def event_files(folder: str | Path) -> list[Path]:
    """In writing order: by the creation second in the name, then the writer's counter at its end
    (files of one second and process; a plain sort would put counter 10 before 9)."""
    def order(path: Path) -> tuple[int, int, str]:
        parts = path.name.split(".")
        counter = parts[-1] if parts[-1].isdigit() else "0"
        return int(parts[3]) if parts[3].isdigit() else 0, int(counter), path.name

    return sorted(Path(folder).glob(_PATTERN), key=order)


def summary_events(folder: str | Path) -> list[Any]:
    """Every ``Event`` with a summary, in order (a torn last record, from a kill, is left out)."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    return [e for path in event_files(folder) for e in LegacyEventFileLoader(str(path)).Load()
            if e.HasField("summary")]


def rewrite(folder: str | Path, records: list[dict[str, Any]]) -> None:
    """Make the folder hold exactly ``records`` (the metrics.jsonl kept by a resume).

    The old events keep their wall times where they line up with the records (same step, same
    order), which they do unless TensorBoard was missing for part of the run.
    """
    folder = Path(folder)
    old = event_files(folder)
    events = summary_events(folder) if old else []
    aligned = 0
    while aligned < min(len(events), len(records)) and events[aligned].step == records[aligned]["step"]:
        aligned += 1
    now = time.time()
    writer = EventWriter(folder)
    for i, record in enumerate(records):
        writer.write(record["step"], record, events[i].wall_time if i < aligned else now)
    writer.close()
    # The new file is complete before the old ones go: a kill in between leaves duplicates that a
    # rerun of the resume removes, never a gap.
    for path in old:
        path.unlink()


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} through TensorBoard's own loader, as its UI would read them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {tag: [(s.step, s.value) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def rewrite_texts(folder: str | Path, texts: list[tuple[int, dict[str, str]]]) -> None:
    """Make a text folder hold exactly ``texts`` ((step, {tag: Markdown}) in order), as
    :func:`rewrite` does for the scalars after a resume."""
    folder = Path(folder)
    old = event_files(folder)
    writer = EventWriter(folder)
    for step, by_tag in texts:
        writer.write_text(step, by_tag)
    writer.close()
    for path in old:
        path.unlink()


def read_texts(folder: str | Path) -> dict[str, list[tuple[int, str]]]:
    """{tag: [(step, Markdown), ...]} of the text summaries, through TensorBoard's own loader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [(t.step, t.tensor_proto.string_val[0].decode("utf-8")) for t in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}
