"""``remax-ray plot RUN_DIR`` on a synthetic metrics.jsonl laid out as the trainer writes it."""

from __future__ import annotations

import json
import math
import struct
import zlib

import pytest

from remax_ray.cli import main
from remax_ray.monitor.run_plots import PlotError, load_records, plot_run, series

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(folder, steps: int = 12) -> list[dict]:
    """Evaluations every 4 steps (logged at the step they precede), one step record per step."""
    records = [{"step": 0, "eval_greedy_reward": 0.1, "dataset_lines_skipped": 0.0, "elapsed_s": 0.0}]
    for k in range(steps):
        records.append({"step": k, "reward_sample": 0.1 + 0.05 * k + 0.02 * math.sin(k),
                        "reward_greedy": 0.1 + 0.04 * k, "kl": 0.001 * k * k, "logp_diff": 2e-4 + 1e-5 * k,
                        "generate_s": 4.0 + 0.1 * k, "score_s": 0.5, "learn_s": 3.0, "sync_s": 0.4,
                        "step_s": 7.9 + 0.1 * k, "elapsed_s": 8.0 * (k + 1)})
        if (k + 1) % 4 == 0:
            records.append({"step": k + 1, "eval_greedy_reward": 0.1 + 0.05 * (k + 1), "elapsed_s": 8.0 * (k + 1)})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def _png_size(path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature and the chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(kind + body)
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"  # complete: the file ends with its IEND chunk
    return struct.unpack(">II", body[:8])


def test_plot_writes_each_curve_as_a_valid_png(tmp_path, capsys):
    _write_run(tmp_path / "run")
    assert main(["plot", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out.split()
    names = ["reward.png", "kl.png", "phases.png", "logp_diff.png"]
    assert printed == [str(tmp_path / "run" / "plots" / n) for n in names]
    for name in names:
        width, height = _png_size(tmp_path / "run" / "plots" / name)
        assert (width, height) == (840, 504)  # 7 x 4.2 inches at 120 dpi


def test_out_folder_and_a_run_without_steps_yet(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval_greedy_reward": 0.2}) + "\n")
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert _png_size(tmp_path / "figs" / "reward.png")  # the first evaluation alone is a curve
    assert "kl.png: skipped" in out and "phases.png: skipped" in out and "logp_diff.png: skipped" in out
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["reward.png"]


def test_a_folder_without_metrics_is_a_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no metrics.jsonl in {tmp_path}" in err and "run.output_dir" in err
    (tmp_path / "metrics.jsonl").write_text("")
    assert main(["plot", str(tmp_path)]) == 2
    assert "has no records yet" in capsys.readouterr().err
    assert not (tmp_path / "plots").exists()


def test_series_takes_finite_values_and_a_torn_last_line(tmp_path):
    records = _write_run(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 12, "reward_sam')  # the driver was killed mid-write
    assert load_records(tmp_path) == records
    steps, evals = series(records, "eval_greedy_reward")
    assert steps == [0, 4, 8, 12] and evals[0] == 0.1
    assert series([{"step": 0, "kl": float("nan")}, {"step": 1, "kl": 0.5}], "kl") == ([1], [0.5])
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\nnot json\n{"step": 1}\n')
    with pytest.raises(PlotError, match=r"metrics.jsonl:2 is not JSON"):
        plot_run(tmp_path)
