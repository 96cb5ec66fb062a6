"""Model families fitted with NumPy alone, written to model files without torch or the onnx package.

:mod:`pca` (principal components of the window's per-feature summaries)
fits in milliseconds and writes its ONNX graph through
:mod:`edgewatch.wire.onnx_write`, so the base install can make one: the
agent's ``--learn``, ``edgewatch train pca``, ``edgewatch fit`` and
``edgewatch eval`` all import it from here. Imports the contract, the wire
codecs, :mod:`edgewatch.files` and ONNX Runtime (the check that a written
file scores as NumPy does); never the agent or anything above it.
"""
