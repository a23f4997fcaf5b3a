"""Exploration components (``exploration:`` section, docs/exploration.md).

- :mod:`~tmrl2.exploration.base`: the configs' base, the :class:`IntrinsicReward` (trainer)
  and :class:`ActorNoise` (worker) contracts, ``none``, :func:`build_actor_noise`;
- :mod:`~tmrl2.exploration.rnd`, :mod:`~tmrl2.exploration.icm`: intrinsic rewards trained on
  the learner's batches; :mod:`~tmrl2.exploration.features`: their observation embeddings
  (images and vector parts) and running statistics;
- :mod:`~tmrl2.exploration.learner`: :class:`ExploringLearner`, the learner whose critic
  target gets the weighted, normalized bonus, and :func:`wrap_learner`;
- :mod:`~tmrl2.exploration.param_noise`: perturbed actor weights in the workers.

Nothing is imported here, so that loading a config imports only the component it names.
"""
