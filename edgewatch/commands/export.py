"""``edgewatch export``: turn a training checkpoint into a model file."""

from edgewatch.commands.groups import lazy_group

export = lazy_group(
    "export",
    "Export a trained checkpoint to a self-describing (quantized) ONNX file.",
    {"onnx": "edgewatch.commands.export_onnx:command"},
    epilog="""\b
Example:
  edgewatch export onnx conv-ae.ckpt -o conv-ae.onnx
Then: edgewatch agent check conv-ae.onnx""",
)
