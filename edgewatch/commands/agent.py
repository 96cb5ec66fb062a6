"""``edgewatch agent``: the streaming scorer that runs next to the equipment."""

from edgewatch.commands.groups import lazy_group

agent = lazy_group(
    "agent",
    "Run the scoring agent (needs only ONNX Runtime and NumPy).",
    {"run": "edgewatch.commands.agent_run:command", "check": "edgewatch.commands.agent_check:command",
     "tags": "edgewatch.commands.agent_tags:command"},
    epilog="""\b
Examples:
  edgewatch agent check pump.onnx
  edgewatch agent run --model pump.onnx --source replay:pump-today.csv
  edgewatch agent tags --model pump.onnx --source opcua://10.0.0.7:4840/Objects/2:Pump01
  edgewatch agent run --model pump.onnx --source "mqtt://broker:1883/plant/{stream}/{feature}" \\
      --sink mqtt://broker:1883/edgewatch --agent-id pump-7""",
)
agent.takes_stop_signals = True  # type: ignore[attr-defined]  # its ``run`` does; its other commands get them back
