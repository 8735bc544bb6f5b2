"""deploy/grafana/remax.json: importable beside Ray's own dashboards, filtered by run, and plotting only
series that remax-ray exports.

Names: MetricsSink exports record key K as the gauge ``remax_K`` (tag ``run``); Ray's Prometheus
endpoint prefixes every metric with its namespace ``ray_`` (ray._private.telemetry's NAMESPACE), so a
panel queries ``ray_remax_K`` (tests/integration/test_job_submit.py reads them back from a live node).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((REPO / "deploy" / "grafana" / "remax.json").read_text())
TARGETS = [t for p in DASHBOARD["panels"] for t in p["targets"]]


def _queried_keys() -> set[str]:
    return {m for t in TARGETS for m in re.findall(r"ray_remax_(\w+)", t["expr"])}


def test_uses_the_prometheus_datasource_variable_like_rays_dashboards():
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    for name in ("SessionName", "run"):  # filled from the series' own labels
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert re.fullmatch(rf"label_values\(ray_remax_\w+(\{{.*\}})?, {name}\)", variables[name]["query"]["query"])
    assert variables["run"]["multi"] and variables["run"]["includeAll"]
    # Its own uid and title, so importing it beside Ray's dashboards replaces none of them.
    assert DASHBOARD["uid"] == "remaxRay" and not DASHBOARD["uid"].startswith("ray")


def test_every_query_is_filtered_by_run_and_session():
    assert TARGETS
    for t in TARGETS:
        selectors = re.findall(r"ray_remax_\w+\{([^}]*)\}", t["expr"])
        assert selectors and len(selectors) == len(re.findall(r"ray_remax_\w+", t["expr"])), t["expr"]
        for sel in selectors:
            assert 'run=~"$run"' in sel and 'SessionName=~"$SessionName"' in sel, t["expr"]
        assert "{{run}}" in t["legendFormat"]


def test_panels_cover_what_the_issue_asks_for():
    keys = _queried_keys()
    asked = {"reward_sample", "reward_greedy", "adv_mean", "adv_std", "kl", "entropy", "loss", "grad_norm",
             "generate_s", "score_s", "learn_s", "sync_s", "step_s", "sync_bytes", "logp_diff",
             "eval_greedy_reward"}
    assert asked <= keys, asked - keys


def test_layout_is_a_valid_grid_with_unique_ids():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in DASHBOARD["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))


def _learner_record(tmp_path) -> dict[str, float]:
    """A real Learner.train_step record (tiny random Llama, in-process, no Ray)."""
    from remax_ray.assets.tiny import build_tiny_model
    from remax_ray.config import AlgoConfig, LearnerConfig
    from remax_ray.data.rollouts import Completion, PromptRollout
    from remax_ray.learner.learner import Learner

    learner = Learner(str(build_tiny_model(tmp_path / "tiny")), LearnerConfig(micro_batch_size=2),
                      AlgoConfig(), seed=0)
    g = torch.Generator().manual_seed(0)
    rollouts = [PromptRollout("p", torch.randint(1, 300, (4,), generator=g).tolist(),
                              [Completion(torch.randint(1, 300, (3,), generator=g).tolist(), "", "length",
                                          [-5.0, -5.0, -5.0])],
                              Completion([5, 6], "", "length"), [float(i)], 0.5) for i in range(2)]
    return learner.train_step(rollouts)


def _dict_keys_in_package() -> set[str]:
    """String keys of every dict literal in remax_ray: where the trainer builds its step record
    (phase seconds, sync bytes, the eval reward), wherever that code lives."""
    keys = set()
    for path in (REPO / "remax_ray").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                keys |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return keys


def test_every_queried_metric_is_a_key_the_training_code_logs(tmp_path):
    learner_keys = set(_learner_record(tmp_path))
    assert {"loss", "grad_norm", "kl", "entropy", "logp_diff", "reward_sample"} <= learner_keys
    trainer_side = _queried_keys() - learner_keys
    unknown = trainer_side - _dict_keys_in_package()
    assert not unknown, f"the dashboard queries keys no code logs: {sorted(unknown)}"
    # The live check (every queried series on a real node's /metrics) is the job-submission test.

