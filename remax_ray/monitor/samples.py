"""Samples beside the curves: what the policy answered to a fixed set of held-out prompts at each
evaluation, in ``samples.jsonl`` (the source of truth), TensorBoard's text tab and the terminal
(``remax-ray samples RUN_DIR [--step N]``).

``samples.jsonl`` has one JSON object per evaluation and prompt (the first ``run.sample_prompts``
held-out prompts, the same ones at every evaluation, sampled with the same seeds)::

    {"step": 8, "index": 0, "prompt": "...", "greedy": "...", "greedy_reward": 0.61,
     "sample": "...", "sample_reward": 0.12, "columns": {"answer": "42"}}

``step`` counts the training steps done before the evaluation (0: before training). A reward that
was not finite is ``null``; so is ``sample`` with ``run.eval_samples=0``. ``columns`` are the row's
other dataset columns. docs/metrics.md documents the format.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FILE = "samples.jsonl"
TB_FOLDER = "samples"
"""Under the run's ``tensorboard/`` folder: one text tag per prompt, ``samples/prompt_<index>``."""

Record = dict[str, Any]


class SamplesError(ValueError):
    """The folder holds no samples; the message says why."""


def append(path: Path, records: list[Record]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def read(path: Path) -> list[Record]:
    """The records of a samples file (a line torn by a kill mid-write, the last one, is left out)."""
    if not path.exists():
        return []
    out, lines = [], path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line)) if line.strip() else None
        except json.JSONDecodeError:
            if n < len(lines):
                raise SamplesError(f"{path}:{n} is not JSON") from None
    return out


def keep_through(path: Path, step: int | None) -> list[Record]:
    """Cut the file to the evaluations at or before ``step`` (None: none); returns what it kept.
    A resume calls this with the last evaluation its checkpoint had logged, so an evaluation that
    runs again is not listed twice."""
    kept = [r for r in read(path) if step is not None and r["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in kept), encoding="utf-8")
    tmp.replace(path)
    return kept


def _cell(text: Any) -> str:
    # A Markdown table cell: no raw pipes, newlines as line breaks (TensorBoard allows <br>).
    return "" if text is None else str(text).replace("|", "\\|").replace("\n", "<br>")


def _reward(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _scalar_columns(record: Record) -> dict[str, Any]:
    """The row's columns worth a line (an answer, a label), not nested ones like chat messages."""
    return {k: v for k, v in (record.get("columns") or {}).items() if not isinstance(v, (list, dict))}


def markdown(record: Record) -> str:
    """One prompt's entry in TensorBoard's text tab: the prompt, its short columns, a table of the
    greedy and the sampled response with their rewards."""
    head = [f"**prompt** {_cell(record['prompt'])}"]
    head += [f"**{_cell(k)}** {_cell(v)}" for k, v in _scalar_columns(record).items()]
    rows = ["| response | reward | text |", "|---|---|---|",
            f"| greedy | {_reward(record['greedy_reward'])} | {_cell(record['greedy'])} |"]
    if record.get("sample") is not None:
        rows.append(f"| sample | {_reward(record['sample_reward'])} | {_cell(record['sample'])} |")
    return "  \n".join(head) + "\n\n" + "\n".join(rows)


def tag(record: Record) -> str:
    return f"{TB_FOLDER}/prompt_{record['index']}"


def texts_by_step(records: list[Record]) -> list[tuple[int, dict[str, str]]]:
    """(step, {tag: Markdown}) per evaluation, in order: what the text folder holds."""
    out: list[tuple[int, dict[str, str]]] = []
    for record in records:
        if not out or out[-1][0] != record["step"]:
            out.append((record["step"], {}))
        out[-1][1][tag(record)] = markdown(record)
    return out


def _quoted(text: Any, width: int, keep_end: bool = False) -> str:
    """``text`` in quotes (\\n for a newline), cut to ``width``: its start, or with ``keep_end`` its
    end (a prompt's end is what the response continues; a chat prompt starts with its template)."""
    if text is None:
        return "-"
    shown = json.dumps(str(text), ensure_ascii=False)
    if len(shown) <= width:
        return shown
    return '"...' + shown[-(width - 4):] if keep_end else shown[: width - 4] + '..."'


def render(records: list[Record], step: int | None = None, width: int = 100) -> str:
    """The terminal view: per prompt, its greedy and sampled answer at each evaluation (or at
    ``step`` only), so a reader sees how the answers to the same prompts changed."""
    steps = sorted({r["step"] for r in records})
    if step is not None:
        if step not in steps:
            raise SamplesError(f"no samples at step {step}; evaluations at steps {', '.join(map(str, steps))}")
        records = [r for r in records if r["step"] == step]
    lines: list[str] = []
    for index in sorted({r["index"] for r in records}):
        mine = sorted((r for r in records if r["index"] == index), key=lambda r: r["step"])
        lines.append(f"[{index}] {_quoted(mine[-1]['prompt'], width, keep_end=True)}")
        lines += [f"    {k}: {_quoted(v, width) if isinstance(v, str) else v}"
                  for k, v in _scalar_columns(mine[-1]).items()]
        lines.append("    step  response  reward  text")
        for r in mine:
            lines.append(f"    {r['step']:>4}  greedy    {_reward(r['greedy_reward']):>6}  {_quoted(r['greedy'], width)}")
            if r.get("sample") is not None:
                lines.append(f"    {'':>4}  sample    {_reward(r['sample_reward']):>6}  {_quoted(r['sample'], width)}")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def load(run_dir: str | Path) -> list[Record]:
    path = Path(run_dir) / FILE
    if not path.is_file():
        raise SamplesError(f"no {FILE} in {run_dir}: pass a run folder (run.output_dir of `remax-ray train`, "
                           "default runs/default); each evaluation of a run with run.sample_prompts > 0 "
                           "writes one")
    records = read(path)
    if not records:
        raise SamplesError(f"{path} has no samples yet: the run writes them at its first evaluation")
    return records


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("samples", help="show how a run's answers to fixed held-out prompts changed across "
                                       "evaluations (RUN_DIR/samples.jsonl)",
                       description="Per held-out prompt: the greedy and one sampled response, with their "
                                   "rewards, at every evaluation of the run (or at --step N only).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (run.output_dir), e.g. runs/default")
    p.add_argument("--step", type=int, help="only the evaluation after this many steps (0: before training)")
    p.add_argument("--width", type=int, default=100, help="longest text shown per response (default 100)")


def main(args: argparse.Namespace) -> int:
    try:
        print(render(load(args.run_dir), args.step, args.width))
    except SamplesError as e:
        print(f"remax-ray samples: {e}", file=sys.stderr)
        return 2
    return 0
