"""deploy/: the job configs, the runtime env and deploy/job-submit.sh, checked with the project's own
config loader and CLI parser and with Ray's own runtime-env code; nothing here starts Ray."""

from __future__ import annotations

import os
import shlex
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from remax_ray.cli import _parser
from remax_ray.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "deploy" / "configs"
RUNTIME_ENV = REPO / "deploy" / "runtime-env.yaml"
NAMES = ("tiny-cpu", "smollm2-cpu", "gpu-1node-8x", "gpu-multinode")


def test_the_four_deploy_configs_are_there():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_config_loads_and_validates(name):
    cfg = load_config(str(CONFIGS / f"{name}.yaml"), [])
    # Every key given in the file is a real key that reached the config, not a default left over.
    data = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    for section, values in data.items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"
    # Outputs must survive the job: a relative folder would sit in Ray's unpacked working_dir.
    assert Path(cfg.run.output_dir).is_absolute()


def test_gpu_configs_fit_one_gpu_per_actor():
    one = load_config(str(CONFIGS / "gpu-1node-8x.yaml"), [])
    assert one.cluster.device == "cuda" and one.rollout.num_generators + 1 == 8  # 7 generators + learner
    multi = load_config(str(CONFIGS / "gpu-multinode.yaml"), [])
    assert multi.rollout.num_generators + 1 == 16 and multi.cluster.sync_transport == "nccl"
    for cfg in (one, multi):  # every generator gets the same number of prompts
        assert cfg.run.prompts_per_step % cfg.rollout.num_generators == 0
    # On several nodes, every path the actors open must be on storage all of them mount: the folders
    # given as paths, and REMAX_RAY_HOME (/mnt/shared/remax-ray on every node) for the builtin assets.
    assert all(p.startswith("/mnt/shared/") for p in (multi.model.path, multi.run.output_dir))
    assert multi.reward.model_path.startswith("builtin:") and multi.run.dataset.startswith("builtin:")


@pytest.mark.parametrize("name", ["gpu-multinode", "gpu-1node-8x"])
def test_a_fresh_asset_home_gets_every_asset_the_gpu_config_names(name, tmp_path, monkeypatch):
    """The driver's real prepare step, on an empty REMAX_RAY_HOME (a fresh shared volume) with an
    image's prebuilt folder: what the config reads from the asset home is there afterwards, as the
    folders the actors are handed. A plain path into the home (as gpu-multinode.yaml once named its
    reward model) would be left missing: prepare copies or builds builtin: names only."""
    from remax_ray.assets.home import resolve_reward_model_path
    from remax_ray.config import resolve_score_response_only
    from remax_ray.driver.prepare import prepare_builtins_for_config

    prebuilt, home = tmp_path / "image-assets", tmp_path / "shared" / "remax-ray"
    for rel in ("sentiment-rm/config.json", "sentiment-rm/model.safetensors",
                "movie-reviews/train.jsonl", "movie-reviews/eval.jsonl"):
        (prebuilt / rel).parent.mkdir(parents=True, exist_ok=True)
        (prebuilt / rel).write_text("{}\n")
    monkeypatch.setenv("REMAX_RAY_PREBUILT", str(prebuilt))
    monkeypatch.setenv("REMAX_RAY_HOME", str(home))
    cfg = load_config(str(CONFIGS / f"{name}.yaml"), [])
    for path in (cfg.model.path, cfg.reward.model_path, cfg.run.dataset):
        assert path.startswith("builtin:") or not path.startswith("/mnt/shared/remax-ray/"), path
    prepare_builtins_for_config(cfg, log=lambda *_: None)
    assert resolve_reward_model_path(cfg.reward.model_path) == str(home / "sentiment-rm")  # on the driver
    assert (home / "sentiment-rm" / "model.safetensors").is_file()
    assert (home / "movie-reviews" / "train.jsonl").is_file()
    assert resolve_score_response_only(cfg.reward)[0]  # fit on continuations: the prompt is blanked
    plain = load_config(str(CONFIGS / f"{name}.yaml"), [f"reward.model_path={home}/steered-rm"])
    prepare_builtins_for_config(plain, log=lambda *_: None)
    assert not (home / "steered-rm").exists()


def test_tiny_config_runs_its_preflight_on_builtin_tiny(tmp_path, monkeypatch):
    """The smoke config's model, prompts and reward resolve exactly as the job's driver resolves them:
    builtin:tiny is built into REMAX_RAY_HOME, the prompt file is read relative to the repo root."""
    from remax_ray.driver.preflight import preflight
    from remax_ray.driver.prepare import prepare_builtins_for_config

    monkeypatch.setenv("REMAX_RAY_HOME", str(tmp_path))
    monkeypatch.chdir(REPO)  # the job's working_dir is the shipped repository
    cfg = load_config("deploy/configs/tiny-cpu.yaml", [])
    prepare_builtins_for_config(cfg, log=lambda *_: None)
    model_path, splits = preflight(cfg)
    assert Path(model_path) == tmp_path / "tiny" and (tmp_path / "tiny" / "model.safetensors").exists()
    assert len(splits.eval) == cfg.run.eval_prompts == 8
    assert len(splits.train) == 40 - 8  # deploy/data/smoke-prompts.jsonl
    assert getattr(splits, "truncated", 0) == 0  # rollout.max_prompt_tokens fits every smoke prompt


def _runtime_env() -> dict:
    return yaml.safe_load(RUNTIME_ENV.read_text())


def test_runtime_env_is_valid_for_ray():
    from ray.runtime_env import RuntimeEnv

    env = _runtime_env()
    assert set(env) <= RuntimeEnv.known_fields  # a misspelt field would be ignored silently
    RuntimeEnv(**env)  # Ray's own type checks (env_vars must be str -> str, ...)
    assert env["working_dir"] == "."
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"


def test_runtime_env_ships_the_package_and_configs_but_not_the_venv(tmp_path):
    """Package this repository the way `ray job submit` does (Ray's default excludes plus ours, here
    without .gitignore so the file's own excludes must hold), then read the zip."""
    from ray._private.runtime_env.packaging import create_package
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    captured: dict[str, list[str]] = {}
    env = {**_runtime_env(), "working_dir": str(REPO)}
    upload_working_dir_if_needed(env, include_gitignore=False,
                                 upload_fn=lambda wd, excludes, **_: captured.update(excludes=excludes))
    create_package(str(REPO), tmp_path / "pkg.zip", include_gitignore=False, excludes=captured["excludes"])
    names = zipfile.ZipFile(tmp_path / "pkg.zip").namelist()
    tops = {n.split("/")[0] for n in names}
    assert {"remax_ray", "deploy", "pyproject.toml"} <= tops
    assert not {".venv", ".git", "runs", "tests", "docs", "bench"} & tops
    assert not any("__pycache__" in n or ".egg-info" in n for n in names)
    for needed in ("remax_ray/cli.py", "remax_ray/config/default.yaml", "deploy/data/smoke-prompts.jsonl",
                   *[f"deploy/configs/{n}.yaml" for n in NAMES]):
        assert needed in names, needed
    assert (tmp_path / "pkg.zip").stat().st_size < 5_000_000  # Ray refuses packages over 512 MiB


def _fake_ray(tmp_path: Path) -> Path:
    """A `ray` first on PATH that records its folder, RAY_AUTH_MODE and arguments, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ray").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$PWD" "${RAY_AUTH_MODE:-unset}" "$@" '
                                 '> "$FAKE_RAY_OUT"\n')
    (bin_dir / "ray").chmod(0o755)
    return bin_dir


def _submit(tmp_path: Path, *args: str, **env: str) -> tuple[str, str, list[str]]:
    out = tmp_path / "argv.txt"
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base.update(PATH=f"{_fake_ray(tmp_path)}{os.pathsep}{os.environ['PATH']}", FAKE_RAY_OUT=str(out),
                HOME=str(tmp_path / "home"))  # no ~/.ray/auth_token unless a test writes one
    subprocess.run([str(REPO / "deploy" / "job-submit.sh"), *args], env={**base, **env}, check=True,
                   cwd=tmp_path, timeout=60)
    cwd, auth, *argv = out.read_text().splitlines()
    return cwd, auth, argv


def test_job_submit_script_ships_the_repo_and_runs_the_module(tmp_path):
    cwd, auth, argv = _submit(tmp_path, "--config", "deploy/configs/tiny-cpu.yaml", "run.steps=2",
                              RAY_ADDRESS="http://head:8265", REMAX_SUBMIT_FLAGS="--no-wait --submission-id s1")
    # From the repo root, whatever the caller's folder: the runtime env's working_dir "." is that root.
    assert Path(cwd) == REPO
    assert auth == "unset"  # no token anywhere: the cluster cannot be using token auth
    sep = argv.index("--")
    assert argv[:sep] == ["job", "submit", "--address", "http://head:8265", "--runtime-env",
                          "deploy/runtime-env.yaml", "--no-wait", "--submission-id", "s1"]
    entry = argv[sep + 1:]
    assert entry[:3] == ["python", "-m", "remax_ray.cli"]  # no console script needed on the cluster
    # The entrypoint's arguments are a real command of the real CLI, with a config that validates.
    args = _parser().parse_args(entry[3:])
    assert args.command == "train" and args.overrides == ["run.steps=2"]
    assert load_config(str(REPO / args.config), args.overrides).run.steps == 2


def test_job_submit_script_sends_a_token_it_was_given(tmp_path):
    assert _submit(tmp_path, RAY_AUTH_TOKEN="abc")[1] == "token"  # e.g. from the KubeRay Secret
    assert _submit(tmp_path, RAY_AUTH_TOKEN_PATH=str(tmp_path / "token"))[1] == "token"
    assert _submit(tmp_path, RAY_AUTH_MODE="disabled")[1] == "disabled"  # an explicit choice wins
    assert _submit(tmp_path, RAY_AUTH_MODE="token")[1] == "token"  # ~/.ray/auth_token, chosen


def test_job_submit_script_keeps_the_local_token_to_itself(tmp_path):
    """Ray 2.60's local `ray.init()` writes ~/.ray/auth_token for its own cluster; sending it to the
    remote cluster of RAY_ADDRESS would hand that cluster a local secret (and it is not its token)."""
    token_file = tmp_path / "home" / ".ray" / "auth_token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("local")
    assert _submit(tmp_path, RAY_ADDRESS="http://127.0.0.1:8265")[1] == "unset"


def test_every_documented_submit_command_names_a_real_config():
    """The `ray job submit ... -- python -m remax_ray.cli train --config X` lines in the deploy files'
    comments parse with the CLI and name configs that exist."""
    files = [RUNTIME_ENV, *CONFIGS.glob("*.yaml")]
    commands = []
    for f in files:
        lines = [ln.lstrip("# ").rstrip() for ln in f.read_text().splitlines()]
        commands += [ln for ln in lines if ln.startswith("-- python -m remax_ray.cli")]
    assert len(commands) >= len(NAMES)
    for cmd in commands:
        argv = shlex.split(cmd)[4:]  # after "-- python -m remax_ray.cli"
        args = _parser().parse_args(argv)
        assert args.command == "train" and (REPO / args.config).is_file(), cmd
