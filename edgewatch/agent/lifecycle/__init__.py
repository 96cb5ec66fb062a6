"""A model's life on an agent: accepted or refused, signed, stored, run in shadow, promoted, rolled back.

* :mod:`accept`: ``accept(agent, Candidate, Gate) -> Outcome``, the one path every model takes (the
  ``--model`` file at start through ``Gate.admit``, the model store, ``--watch-model``, ``--model-topic``);
* :mod:`signing`: Ed25519 signatures over graph and card, and the :class:`~signing.TrustPolicy`;
* :mod:`releases`: no rollback by replay (the release mark, signed rollback grants);
* :mod:`store`: the models an agent keeps (live, previous, shadow) and its release mark;
* :mod:`shadow`: a model scored beside the live one, its report and ``--promote-if``;
* :mod:`file_watch`: ``--watch-model``; :mod:`receiver`: ``--model-topic``;
* :mod:`fleet_member`: the agent's side of the fleet contract (status, commands, shadow reports).

May import the engine's types, the runtime, the contract, :mod:`edgewatch.mqtt` and
:mod:`edgewatch.wire`; the engine imports only :mod:`shadow` from here (it scores the shadow's windows).
"""
