"""TRL's RLOOTrainer on the comparison's work, in a process of its own (run by bench/vs_trl.py, with
TRL on PYTHONPATH from its own folder; never a dependency of remax-ray).

Usage: python bench/_trl_rloo.py SPEC.json   (prints ``TRL_RESULT {json}``: seconds of each step)
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    torch.set_num_threads(spec["threads"])
    vader = SentimentIntensityAnalyzer()

    def vader_reward(completions, **_):  # the same lexicon remax-ray's reward.kind=vader scores with
        return [vader.polarity_scores(c)["compound"] for c in completions]

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            if not self.ends:
                self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

    per_step = spec["prompts_per_step"] * spec["generations"]
    args = RLOOConfig(
        output_dir=spec["output_dir"], use_cpu=True, bf16=False, fp16=False, report_to=[], save_strategy="no",
        logging_steps=10**6, max_steps=spec["steps"], per_device_train_batch_size=per_step,
        gradient_accumulation_steps=1, num_generations=spec["generations"],
        max_completion_length=spec["max_new_tokens"], temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=spec["lr"], beta=spec["beta"], seed=0, dataloader_num_workers=0,
        model_init_kwargs={"dtype": torch.float32})
    timer = StepTimes()
    trainer = RLOOTrainer(model=spec["model_path"], reward_funcs=vader_reward, args=args,
                          train_dataset=Dataset.from_dict({"prompt": spec["prompts"]}), callbacks=[timer])
    trainer.train()
    steps = [b - a for a, b in zip(timer.ends, timer.ends[1:])]
    print("TRL_RESULT " + json.dumps({"step_s": steps, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
