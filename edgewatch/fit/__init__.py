"""``edgewatch fit``: from CSV files of normal operation to a checked model file, with no guessing.

Modules: :mod:`normal_data` (reading, filling, time order, segments),
:mod:`screening` (which features, level or rate, operating points),
:mod:`choosing` (window, threshold, debounce by principle; the held-out
check), :mod:`report` (the plain report), :mod:`univariate` (one
feature), :mod:`pipeline` (the order of it all).

Torch-free: it imports ``wire``, ``train.pca`` (NumPy), ``export.onnx_writer``
and the agent's runtime (to score the held-out part as the agent would).
Nothing in ``agent`` imports it.
"""
