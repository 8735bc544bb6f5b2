"""Everything that calls Ray's API to run the plain classes: joining a cluster and the address
checks (:mod:`.address`), placement groups (:mod:`.placement`), what the cluster's autoscaler can
add (:mod:`.autoscaling`), the actor shells (:mod:`.shells`) and starting the run's actors
(:mod:`.actors`).

May import: ``ray`` and the plain-class packages (``learner``, ``rollout``, ``reward``, ``sync``) and
below. Never imports ``driver``, ``monitor`` or ``repro``.

Also :mod:`.learner_group` (K learner ranks behind one actor's interface).
"""
