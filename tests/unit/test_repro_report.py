"""results.md / results.json / the figures, rendered from fake stored runs (no Ray)."""

from __future__ import annotations

import json
import sys

from remax_ray.cli import main
from remax_ray.monitor.plots import eval_series, plot_reward_kl, plot_rewards, step_series
from remax_ray.repro.plan import plan_runs, task_base
from remax_ray.repro.runner import write_report

from repro_fakes import records, store_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def store_table(out, *, loaded=False, seeds=(0, 1)):
    runs = plan_runs({"sentiment": task_base(None, "sentiment", ["run.steps=4"])},
                     ["remax", "ppo", "rloo"], list(seeds), out)
    for r in runs:
        greedy = {"remax": 0.6, "ppo": 0.5, "rloo": 0.55}[r.algo] + 0.1 * r.seed
        store_run(r, records(greedy, greedy - 0.2, step_s=4.0 if r.algo == "ppo" else 2.0),
                  other_load=0.5 if loaded else 0.0)
    return runs


def test_report_from_stored_runs(tmp_path):
    store_table(tmp_path)
    write_report(tmp_path, command="remax-ray repro --report-only")
    md = (tmp_path / "results.md").read_text()
    for needed in ("## Provenance", "`abc123` (6 runs)", "`remax-ray repro --out x` (6 runs)",
                   "| sampling | temperature 1.0, top_p 1.0 | temperature 1.0, top_p 0.9 |",
                   "| learning rate | 5e-05 for every arm", "about 46%", "2.2x",
                   "## Task: sentiment", "| remax | 1 | 0,1 | 0.100 |", "| ReMax >= PPO (margin 0.2) |",
                   "(control)", "**inconclusive", "seeds needed for 0.2",
                   "- rloo: `algo.estimator=rloo rollout.samples_per_prompt=2`",
                   "speed-up: seconds per step (PPO / ReMax) | 2.00x", "## Margins and definitions"):
        assert needed in md, needed
    # Two seeds, identical spread in both arms: the paired differences are exact, the interval a point.
    assert "| ReMax >= PPO (margin 0.2) | held-out greedy reward, final | 0,1 | +0.100 [+0.100, +0.100] |" in md
    # ... and still not judged: the per-claim table waits for the planned 5 seeds.
    assert "| ReMax >= PPO (margin 0.2) | 0,1 | **inconclusive (2 of 5 planned seeds)** | too few seeds |" in md
    doc = json.loads((tmp_path / "results.json").read_text(),
                     parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # strict: no NaN
    task = doc["tasks"]["sentiment"]
    assert [a["algo"] for a in task["arms"]] == ["remax", "ppo", "rloo"] and task["target_kl"] == 0.06
    assert len(task["runs"]) == 6 and task["runs"][0]["points"][0]["kl"] == 0.0
    assert doc["planned_seeds"] == 5 and task["claims"][0]["verdict"] == "inconclusive (2 of 5 planned seeds)"
    for name in ("reward.png", "reward_kl.png"):
        assert (tmp_path / "sentiment" / name).read_bytes()[:8] == PNG_MAGIC


def test_loaded_runs_leave_time_and_memory_out(tmp_path):
    store_table(tmp_path, loaded=True, seeds=(0,))
    write_report(tmp_path, command="c")
    md = (tmp_path / "results.md").read_text()
    assert "| remax | 0/1 | —, loaded | —, loaded |" in md  # seconds per phase
    assert "| 3.0 | —, loaded | —, loaded |" in md  # exact state MiB stays; RSS and CUDA peak do not
    assert "speed-up: seconds per step (PPO / ReMax) | —, loaded |" in md
    assert "**inconclusive (n<2)**" in md


def test_report_only_needs_no_ray(tmp_path, capsys, monkeypatch):
    store_table(tmp_path)
    # Every ray module goes, and comes back after the test: a fresh `ray` beside the old
    # submodules would break every later test that uses Ray.
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(["repro", "--report-only", "--out", str(tmp_path)]) == 0
    assert "ray" not in sys.modules
    assert "wrote" in capsys.readouterr().out and (tmp_path / "results.md").exists()


def test_evaluation_below_the_minimum_is_flagged(tmp_path):
    runs = plan_runs({"sentiment": task_base(None, "sentiment", ["run.steps=4", "run.eval_prompts=8"])},
                     ["remax"], [0], tmp_path)
    store_run(runs[0], records(0.5, 0.4))
    write_report(tmp_path, command="c")
    assert "**Evaluation below the repro's minimum** (64 prompts x 4 samples): some runs evaluated 8 prompts x 4" \
        in (tmp_path / "results.md").read_text()


def test_series_place_evaluations_after_their_step():
    recs = records(0.5, 0.4)
    assert step_series(recs) == ([0.0, 1.0, 2.0, 3.0], [4.0, 8.0, 12.0, 16.0],
                                 [0.0, 0.1, 0.2, 0.30000000000000004])
    steps, clock, reward = eval_series(recs)
    assert steps == [0.0, 4.0] and clock == [0.0, 16.0] and reward == [0.1, 0.5]


def test_plots_write_pngs(tmp_path):
    path = plot_rewards({"remax": [records(0.5, 0.4), records(0.6, 0.5)], "ppo": [records(0.4, 0.3)]},
                        tmp_path / "sub" / "reward.png")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height > 100  # two panels side by side
    kl = plot_reward_kl({"remax": [[(0.0, 0.1, 0.0), (0.06, 0.5, 0.4)]], "ppo": [[(0.0, 0.1, 0.0), (0.1, 0.3, 0.2)]]},
                        tmp_path / "kl.png", target_kl=0.06)
    assert kl.read_bytes()[:8] == PNG_MAGIC
