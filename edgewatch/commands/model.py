"""``edgewatch model``: sign and verify model files (and, for a fleet, ship them over MQTT)."""

from edgewatch.cli import lazy_group

model = lazy_group(
    "model",
    "Sign and verify model files (Ed25519): agents given --trust-key run only signed, unchanged models.",
    {"keygen": "edgewatch.commands.model_sign:keygen", "sign": "edgewatch.commands.model_sign:sign",
     "verify": "edgewatch.commands.model_sign:verify"},
)
