"""The ``edgewatch`` command.

Subcommands are imported only when used (:class:`~edgewatch.commands.groups.LazyGroup`),
so that ``edgewatch agent run`` never pays for (or needs) the training
stack, and ``--help`` stays fast. Each subcommand lives in
``edgewatch/commands/<name>.py``.
"""

from __future__ import annotations

import logging
import sys

import click

from edgewatch import __version__
from edgewatch.commands.early_signals import EARLY
from edgewatch.commands.groups import LazyGroup

C = "edgewatch.commands."


class Program(LazyGroup):
    """The root group; called as the program (the ``edgewatch`` script, ``python -m edgewatch.cli``), it holds
    SIGTERM and SIGINT from its first line until the command says how it stops (:mod:`.commands.early_signals`).
    ``CliRunner`` calls :meth:`main` and keeps the test process's handlers."""

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        EARLY.install()
        try:
            return super().__call__(*args, **kwargs)
        finally:
            EARLY.release()  # no command took them (--help, a usage error): Python's handling, a held one delivered


main = Program(
    name="edgewatch",
    help="Anomaly detection next to the equipment: train, export to ONNX, run the agent.",
    epilog="""\b
Start here:
  edgewatch demo                               simulated equipment with faults, the agent, a scorecard (40 s)
  edgewatch fit pump-normal.csv -o pump.onnx   a model of your own equipment from a CSV of normal operation
  edgewatch agent run --model pump.onnx --source replay:pump-normal.csv     replay it: expect no alert
  edgewatch agent run --model pump.onnx --source "mqtt://broker:1883/plant/{stream}/{feature}"
\b
Each command's --help says more; README.md "Watch your own equipment" walks through them.""",
    lazy={
        "simulate": C + "simulate:simulate",
        "fit": C + "fit:command",
        "train": C + "train:train",
        "export": C + "export:export",
        "agent": C + "agent:agent",
        "data": C + "data:data",
        "score": C + "score:score",
        "eval": C + "eval:eval_group",
        "drift": C + "drift:drift",
        "plot": C + "plot:plot",
        "bench": C + "bench:bench",
        "demo": C + "demo:demo",
        "model": C + "model:model",
        "fleet": C + "fleet:fleet",
    },
)
main = click.version_option(__version__, package_name="edgewatch")(main)
main = click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).",
                    expose_value=False, is_eager=True,
                    callback=lambda ctx, p, v: _setup_logging(v))(main)


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
