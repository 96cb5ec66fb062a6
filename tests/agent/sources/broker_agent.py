"""``edgewatch agent run`` as its own process on the session's mosquitto, sent a list of messages, then stopped.

Three live tests (slow sensors, totalisers, over-range marks) need the same
steps: wait until the agent has connected and subscribed, publish each
message with QoS 1, give the agent a moment to score, stop it with SIGINT
as a user would. A test picks its own topic root: other tests leave
retained ``plant/<agent>/status`` topics on the session broker.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.waiting import wait_until


def run_agent_on_broker(broker, argv: Sequence[str], messages: Iterable[tuple[str, str]],  # noqa: ANN001
                        cwd: Path, stderr: Path) -> subprocess.CompletedProcess:
    """Run ``argv`` (an agent reading from ``broker``), publish ``messages`` (topic, payload) once it has
    subscribed, and stop it; its standard output as text, its log in ``stderr``."""
    before = broker.log().count("New client connected")
    agent = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=stderr.open("w"), text=True, cwd=cwd)
    try:
        assert wait_until(lambda: broker.log().count("New client connected") > before, 60), broker.log()
        wait_until(lambda: False, 1.5)  # its subscription follows its connection
        pub = paho.Client(CallbackAPIVersion.VERSION2)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        for topic, payload in messages:
            pub.publish(topic, payload, qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        wait_until(lambda: False, 3)
    finally:
        agent.send_signal(signal.SIGINT)
        out, _ = agent.communicate(timeout=60)
    return subprocess.CompletedProcess(agent.args, agent.returncode, out, stderr.read_text())
