"""The variance record's tables (remax_ray/repro/variance_report.py) and its per-sigma reward block
(remax_ray/repro/variance.py), on synthetic draws: no Ray, no model."""

from __future__ import annotations

import json

import pytest
import torch

from remax_ray.repro.variance import params_note, reward_block, write_atomic
from remax_ray.repro.variance_report import render_variance_markdown
from remax_ray.repro.variance_stats import MEASURED_ESTIMATORS, estimator_weights, variance_table


def _record(task: str, greedy_shift: float) -> dict:
    g = torch.Generator().manual_seed(0)
    d, p, k = 6, 5, 16
    sampled = 3.0 + torch.randn(d, p, 2, generator=g, dtype=torch.float64)  # a large common offset
    greedy = 3.0 + greedy_shift + 0.1 * torch.randn(p, generator=g, dtype=torch.float64)
    offsets = torch.randn(p, generator=g, dtype=torch.float64)
    h = torch.randn(d, p, 2, k, generator=g, dtype=torch.float64)
    grads = {name: torch.einsum("dpj,dpjk->dk", torch.stack([estimator_weights(name, sampled[i], greedy)
                                                              for i in range(d)]), h)
             for name in MEASURED_ESTIMATORS}
    return {"task": task, "policy": {"label": "base", "path": "builtin:x"}, "prompts": p, "draws": d,
            "estimators": list(MEASURED_ESTIMATORS), "sketch": {"dim": k},
            "params": {"spec": "last:2", "count": 7_080_768, "model_total": 134_515_008,
                       "note": params_note("last:2", True)},
            "wall_s": {"total": 100.0, "generate": 40.0, "probe": 50.0},
            "reward_stats": [reward_block(sampled, greedy, offsets, 0.0, 300, 0)],
            "gradient_variance": [{"sigma": 0.0, "estimators": variance_table(grads, 300, 0)}]}


def test_tables_have_a_row_per_condition_and_sigma():
    recs = [_record("near-greedy", 0.0), _record("far-greedy", 30.0)]
    md = render_variance_markdown(recs)
    assert md.count("### ") == 3
    assert "| near-greedy | base | 5 x 6 | last:2: 7.08M of 134.52M (last:2: only these blocks" in md
    assert "the LM head (tied to the input embedding) is excluded" in md
    rows = [line for line in md.splitlines() if line.startswith("| near-greedy | base | 0 |")]
    assert len(rows) == 2  # a reward row and a variance row
    reward_row, variance_row = rows
    # Mean sampled reward ~3: E mu^2 ~9 dwarfs E(r_g - mu)^2, so the greedy baseline helps.
    assert "| yes (" in reward_row
    assert variance_row.count(" x") == 3  # every estimator but remax carries its ratio
    far = next(line for line in md.splitlines() if line.startswith("| far-greedy | base | 0 |"))
    assert "| no (" in far  # a greedy reward 30 away from the samples' is a worse baseline than none


def test_the_record_is_written_atomically(tmp_path):
    out = tmp_path / "a" / "rec.json"
    write_atomic(out, {"x": 1.5, "nan": float("nan")})
    assert json.loads(out.read_text())["x"] == 1.5
    assert [p.name for p in out.parent.iterdir()] == ["rec.json"]

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_atomic(out, {"bad": Boom()})
    assert json.loads(out.read_text())["x"] == 1.5  # the old file stays whole
    assert [p.name for p in out.parent.iterdir()] == ["rec.json"]
