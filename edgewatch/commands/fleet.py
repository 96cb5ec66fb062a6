"""``edgewatch fleet``: the operator's view of the agents under one MQTT prefix."""

from edgewatch.commands.groups import lazy_group

fleet = lazy_group(
    "fleet",
    "See the fleet of agents through their MQTT broker (retained status topics).",
    {"status": "edgewatch.commands.fleet_status:status",
     "shadow-report": "edgewatch.commands.fleet_status:shadow_report",
     "forget": "edgewatch.commands.fleet_status:forget"},
    epilog="""\b
Example:
  edgewatch fleet status --broker mqtt://broker:1883/edgewatch
See docs/fleet.md.""",
)
