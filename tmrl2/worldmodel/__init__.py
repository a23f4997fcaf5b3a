"""The ``world_model:`` section (docs/world_model.md): a learned model of the env's dynamics.

- :mod:`.config`: the section's config (``kind: none`` by default, ``mbpo`` to turn it on);
- :mod:`.state`: the model's state vector, and how a predicted step becomes the next
  observation dict the learner reads (history stacks shift, the newest frame is predicted);
- :mod:`.ensemble`: K probabilistic MLPs with Gaussian heads and learned log-variance bounds;
- :mod:`.rollouts`: Dyna/MBPO rollouts from real states into a model buffer;
- :mod:`.planner`: a batched CEM planner over the ensemble (MPC hints);
- :mod:`.learner`: :class:`~.learner.WorldModelLearner`, wrapping the learner of
  ``algorithm.kind`` (model training, rollouts, real/model mixing, the ``guide`` term);
- :mod:`.explore`: the workers' side of the ``explore`` mode;
- :mod:`.heldout`: one-step and multi-step prediction errors on held-out real transitions.
"""
