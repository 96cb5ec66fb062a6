"""Post-process kind -> its implementation; the card's step spec -> a running step.

The parameter schema of every kind is the contract's
(:data:`edgewatch.contract.postprocess.SCHEMAS`): a card is checked when it
is read. Here each kind names the class built from its parsed parameters.
"""

from __future__ import annotations

from typing import Any, Callable

from edgewatch.agent.postprocess.base import PostProcessor
from edgewatch.agent.postprocess.max import MaxOf
from edgewatch.contract.postprocess import AUX_INPUT_PREFIX, MAX_KIND, SCHEMAS, SCORE_INPUT, PostProcess, spec_problems
from edgewatch.errors import BadModelFile

KINDS: dict[str, Callable[[Any], PostProcessor]] = {}  # kind -> builder from its parsed parameters


def register_kind(name: str, build: Callable[[Any], PostProcessor]) -> None:
    """Add the implementation of a post-process kind whose schema the contract defines (its SCHEMAS)."""
    if name == MAX_KIND:
        raise ValueError(f"{MAX_KIND!r} is the composite kind and cannot be replaced")
    if name not in SCHEMAS:
        raise ValueError(f"post-process kind {name!r} has no parameter schema in edgewatch.contract.postprocess")
    KINDS[name] = build


def make_postprocessor(spec: PostProcess) -> PostProcessor:
    """The agent's implementation of a card's post-process; refuses kinds and parameters it does not know."""
    if spec.kind == MAX_KIND:
        if not spec.parts:
            raise BadModelFile("a 'max' post-process needs at least one part")
        parts: list[tuple[PostProcessor, slice | None]] = []
        for part in spec.parts:
            if part.input == SCORE_INPUT:
                parts.append((make_postprocessor(part), None))
                continue
            name = part.input[len(AUX_INPUT_PREFIX):]
            if not part.input.startswith(AUX_INPUT_PREFIX) or name not in part.aux_columns:
                raise BadModelFile(f"post-process input {part.input!r} names no aux column of the model "
                                   f"(its aux: {sorted(part.aux_columns) or 'none'})")
            parts.append((make_postprocessor(PostProcess(part.kind, part.params, SCORE_INPUT, part.parts)),
                          part.aux_columns[name]))
        return MaxOf(parts, float(spec.params.get("alert", 0.0)))
    if spec.parts:
        raise BadModelFile(f"only a 'max' post-process has parts, not {spec.kind!r}")
    if spec.input != SCORE_INPUT:  # one step on an aux column: a max of one part does the reading
        return make_postprocessor(PostProcess(MAX_KIND, parts=[spec]))
    problems = spec_problems(spec)
    if problems:
        raise BadModelFile("; ".join(problems))
    build = KINDS.get(spec.kind)
    if build is None:
        raise BadModelFile(f"post-process kind {spec.kind!r} is in the contract but this agent cannot run it; "
                           "upgrade edgewatch")
    return build(SCHEMAS[spec.kind].from_dict(dict(spec.params), spec.kind))
