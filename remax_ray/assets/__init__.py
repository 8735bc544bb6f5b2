"""Offline assets: everything comes from a pip package or is built on this machine (no model hub).

- :mod:`.home`: where assets live, what ``builtin:<name>`` means, atomic publishing (standard
  library only);
- :mod:`.hf`: Hugging Face folder checks and loading keyword arguments;
- builders of the builtin model and data: :mod:`.smollm2` (the policy), :mod:`.corpora` (Pang & Lee
  prompts and pairs), :mod:`.steered` (the same openings and snippets with an instruction to continue
  positively or negatively), :mod:`.arithmetic` (seeded arithmetic problems with answers),
  :mod:`.tiny` (a random test Llama). The builtin reward models are trained by
  :mod:`remax_ray.reward.train_rm`, and :mod:`remax_ray.driver.prepare` picks what a config needs.

May import: ``config`` (and torch/transformers inside the builders). Everything above may import it;
this ``__init__`` imports nothing, so importing a leaf never loads a builder.

Also :mod:`.tiny_archs` (tiny random models of several architecture families, for the matrix).
"""
