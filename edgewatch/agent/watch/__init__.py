"""The inputs against what the model was trained on, while the agent runs.

A model scores well only on data like its training data, and its score
alone cannot say when the data moved (a model fitted at another operating
point flags everything, or nothing). So the agent also watches each
stream's inputs: its first rows against the training range in the card
(:mod:`.range_check`: the wrong model says so within a minute), and then a
running two-sample KS test against the card's drift reference
(:mod:`.drift_watch`). :mod:`.feature_ranges` reads the training range per
feature from the card, for those checks and for the live page and the run
record, which draw each feature against it.

NumPy, the contract and the agent's grouping of a batch by stream
(:func:`edgewatch.agent.windows.group_by_slot`) only.
"""
