"""The records a run reads and passes on: prompt datasets (:mod:`.prompts`: jsonl, parquet and
``datasets`` folders, text or chat rows, each row's other columns; :mod:`.long_prompts`),
comparison pairs for reward-model training (:mod:`.pairs`), and the rollout records that generators
produce and the reward scorer and the learner consume (:mod:`.rollouts`: the data contract between
the two sides, so neither imports the other).

May import: ``assets.home``, ``assets.corpora``, ``assets.steered`` (builtin files are built on first
use), ``config``.
No ``ray``, no torch; pyarrow only when a parquet file or a datasets folder is read.
"""
