"""``builtin:arithmetic``: addition and subtraction problems with their answers, generated from a
seed on this machine (nothing is downloaded): the worked example of a verifiable reward that reads a
column of the dataset (``remax_ray.reward.functions:exact_match`` on ``answer``).

Each row serves both prompt formats::

    {"prompt": "What is 17 + 25? Answer with the number only.",
     "messages": [{"role": "user", "content": "What is 17 + 25? Answer with the number only."}],
     "answer": "42"}

``run.prompt_key=prompt`` (the default) trains on the plain text, ``run.messages_key=messages`` on the
policy's chat template.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from remax_ray.assets.home import ARITHMETIC, assets_home, atomic_publish

QUESTION = "What is {a} {op} {b}? Answer with the number only."


def arithmetic_rows(seed: int = 0, n_train: int = 2000, n_eval: int = 200,
                    max_operand: int = 99) -> tuple[list[dict], list[dict]]:
    """(train rows, held-out rows): distinct problems ``a + b`` and ``a - b`` (a >= b, so every
    answer is a natural number) with operands up to ``max_operand``, drawn without replacement by a
    seeded shuffle, so no held-out problem is trained on."""
    problems = [(a, op, b) for a in range(max_operand + 1) for b in range(max_operand + 1)
                for op in "+-" if op == "+" or a >= b]
    if n_train + n_eval > len(problems):
        raise ValueError(f"only {len(problems)} distinct problems with operands up to {max_operand}")
    random.Random(seed).shuffle(problems)

    def row(a: int, op: str, b: int) -> dict:
        question = QUESTION.format(a=a, op=op, b=b)
        return {"prompt": question, "messages": [{"role": "user", "content": question}],
                "answer": str(a + b if op == "+" else a - b)}

    rows = [row(*p) for p in problems[: n_eval + n_train]]
    return rows[n_eval:], rows[:n_eval]


def prepare_arithmetic(log=print) -> Path:
    """``builtin:arithmetic``: ``train.jsonl`` (2,000 problems) and ``eval.jsonl`` (200), seed 0."""
    out = assets_home() / ARITHMETIC
    if (out / "eval.jsonl").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    train, held = arithmetic_rows()
    for split, rows in (("train", train), ("eval", held)):
        (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    atomic_publish(tmp, out)
    log(f"arithmetic problems: {len(train)} train, {len(held)} held-out -> {out}")
    return out
