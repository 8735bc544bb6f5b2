"""The run's life on the driver: the :class:`~remax_ray.driver.trainer.Trainer` (``step()`` top
to bottom), the calls it makes to the generator and reward actors (:mod:`.actor_calls`), the
held-out evaluation it shares with ``remax-ray eval`` (:mod:`.evaluation`, :mod:`.eval_command`),
the input checks before any actor starts (:mod:`.preflight`), where a run starts (:mod:`.resume`)
and what the driver keeps between steps (:mod:`.run_state`).

May import: ``cluster`` and ``monitor`` and everything below them. Imported by ``cli`` and ``repro``.

Also :mod:`.weight_sync` (the sync behind one ``push``), :mod:`.recovery` (the one recovery
policy), :mod:`.prepare` (the builtin assets a config needs) and :mod:`.interrupts` (Ctrl-C during start-up).
"""
