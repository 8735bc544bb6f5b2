"""The learner: policy + frozen reference (+ PPO's critic) and the update (:mod:`.learner`), the
experience and micro-batch stages, and the checkpoint folder it writes (:mod:`.checkpoint`,
:mod:`.state`).

A plain class: may import ``algo``, ``config``, ``data``, ``assets.hf``/``assets.home``, torch and
transformers. Never ``ray``, ``rollout`` or ``sync`` (the weight transports wrap it in
``cluster.shells``).
"""
