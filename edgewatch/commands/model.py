"""``edgewatch model``: sign and verify model files (and, for a fleet, ship them over MQTT)."""

from edgewatch.commands.groups import lazy_group

model = lazy_group(
    "model",
    "Sign and verify model files; publish, roll back and promote them on a fleet of agents over MQTT.",
    {"keygen": "edgewatch.commands.model_sign:keygen", "sign": "edgewatch.commands.model_sign:sign",
     "verify": "edgewatch.commands.model_sign:verify", "publish": "edgewatch.commands.model_fleet:publish",
     "rollback": "edgewatch.commands.model_fleet:rollback", "promote": "edgewatch.commands.model_fleet:promote"},
    epilog="""\b
Examples:
  edgewatch model keygen -o release.key
  edgewatch model sign pump.onnx --key release.key -o pump.onnx
  edgewatch model publish pump.onnx --broker mqtt://broker:1883/edgewatch
See docs/fleet.md.""",
)
