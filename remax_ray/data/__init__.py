"""The records a run reads and passes on: prompt datasets (:mod:`.prompts`, :mod:`.long_prompts`),
comparison pairs for reward-model training (:mod:`.pairs`), and the rollout records that generators
produce and the reward scorer and the learner consume (:mod:`.rollouts`: the data contract between
the two sides, so neither imports the other).

May import: ``assets.home``, ``assets.corpora`` (builtin files are built on first use), ``config``.
No ``ray``, no torch.
"""
