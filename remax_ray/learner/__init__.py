"""The learner: policy + frozen reference (+ PPO's critic) and the update (:mod:`.learner`), the
experience and micro-batch stages, and the checkpoint folder it writes (:mod:`.checkpoint`,
:mod:`.state`).

A plain class: may import ``algo``, ``config``, ``data``, ``assets.hf``/``assets.home``, torch and
transformers. Never ``ray``, ``rollout`` or ``sync`` (the weight transports wrap it in
``cluster.shells``).

Other modules: :mod:`.batch` and :mod:`.minibatch` (micro- and PPO mini-batches), :mod:`.experience`,
:mod:`.totals` (the update's typed sums), :mod:`.critic`, :mod:`.response_logp`, :mod:`.optim`,
:mod:`.memory`, and for K ranks :mod:`.dist` (collectives), :mod:`.parallel` (DDP/FSDP2) and
:mod:`.shard` (which rank trains which prompts). It may also import ``models`` (the architecture adapter).
"""
