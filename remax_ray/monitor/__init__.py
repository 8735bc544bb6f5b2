"""What a person sees: the one metrics sink (``metrics.jsonl``, Ray gauges and counters,
TensorBoard), the metric catalogue (:mod:`.metric_names`), the evaluations' sample tables
(:mod:`.samples`: ``samples.jsonl``, TensorBoard's text tab, ``remax-ray samples``), plots, and the
terminal filter (:mod:`.console`).

May import: ``ray``, the standard library, numpy/matplotlib/tensorboard. Nothing else of remax_ray
except its own modules, so any layer above can report through it.

Also :mod:`.run_plots` and :mod:`.tb_events` (TensorBoard events written and rewritten).
"""
