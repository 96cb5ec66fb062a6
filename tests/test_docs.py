"""The docs a new user follows literally: every command line they show names options that exist, every metric
they name is one the agent serves (and every metric is named), every ``agent run`` flag is documented, and
their TOML snippets are read by the agent as they stand.

Running the docs by hand found an option list of the operator commands behind the code and an error hint
that could not be copied; these checks keep such drift from coming back without a person rereading them.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest

from edgewatch.agent.config import flags_of_document, to_default_map
from edgewatch.agent.ops.metrics import METRICS, STREAM_SERIES, MetricKind
from edgewatch.agent.sinks import SinkContext, make_sink
from edgewatch.agent.sources import make_source
from edgewatch.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
# the pages checked; fit.md and eval.md have checks of their own (tests/fit, tests/eval)
PAGES = ["agent", "operators", "sources", "fleet", "ui", "families", "platform", "drift", "skab", "architecture"]
AGENT_PAGES = ["agent", "operators", "sources", "fleet", "ui", "skab"]  # where `agent run`'s flags are explained
S0_FEATURES = ["cpu", "memory", "traffic", "fan"]


def _text(page: str) -> str:
    return (DOCS / f"{page}.md").read_text(encoding="utf-8")


def command_lines(text: str) -> list[tuple[str, bool]]:
    """``edgewatch ...`` lines of the fenced blocks (continuations joined; meant to be run as shown: True) and
    of inline code spans (a command named in a sentence, often without its required options: False)."""
    lines: list[tuple[str, bool]] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"&&|;|\|", line.split(" #")[0]):
                if part.strip().startswith("edgewatch "):
                    lines.append((" ".join(part.strip().rstrip("&").split()), True))
    lines += [(" ".join(span.split()), False) for span in re.findall(r"`(edgewatch [^`]+)`", text)]
    return lines


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # an unbalanced quote in a shortened example: the plain split is enough for its options
        return line.split()


def resolve(words: list[str]) -> tuple[click.Command, list[str]] | None:
    """The click command a command line runs and its remaining words; None for a group named alone."""
    command: click.Command = main
    rest = words[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        if rest[0].startswith("<"):  # `edgewatch train <family>`: a placeholder
            return None
        if "|" in rest[0]:  # `edgewatch model publish|rollback|promote`: each must exist
            missing = [n for n in rest[0].split("|") if command.get_command(click.Context(command), n) is None]
            assert not missing, f"no command {missing} in {' '.join(words)!r}"
            return None
        sub = command.get_command(click.Context(command), rest[0])
        if sub is None:
            raise AssertionError(f"no command {rest[0]!r} in {' '.join(words)!r}")
        command, rest = sub, rest[1:]
    return None if isinstance(command, click.Group) else (command, rest)


def options_of(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts + param.secondary_opts)
    return names


@pytest.mark.parametrize("page", PAGES)
def test_every_command_line_of_a_page_names_options_its_command_has(page: str) -> None:
    checked, wrong = 0, []
    for line, runnable in command_lines(_text(page)):
        found = resolve(_words(line))
        if found is None:
            continue
        command, rest = found
        known = options_of(command)
        given = set()
        for word in rest:
            flag = word.strip("[]").split("=")[0]
            if re.fullmatch(r"--?[a-zA-Z][\w-]*", flag) and flag not in known:
                wrong.append(f"{flag} in {line!r}")
            given.add(flag)
        shortened = not runnable or "..." in line or "…" in line or "--config" in given or "--help" in given
        for param in command.params:  # a line copied as shown must run: its required options are there
            if isinstance(param, click.Option) and param.required and not shortened and not given & set(param.opts):
                wrong.append(f"{param.opts[0]} (required) missing from {line!r}")
        checked += 1
    assert not wrong, f"docs/{page}.md names options its commands do not have: {wrong}"
    assert checked or page in ("architecture", "platform"), f"no command line found in docs/{page}.md"


def test_the_command_line_reader_sees_what_it_should() -> None:
    text = ("```sh\nedgewatch agent run --model m.onnx \\\n    --bogus 1 &\n# edgewatch fleet status --nope\n```\n"
            "and `edgewatch model sign m.onnx --key k -o s.onnx`.\n")
    lines = command_lines(text)
    assert lines == [("edgewatch agent run --model m.onnx --bogus 1", True),
                     ("edgewatch model sign m.onnx --key k -o s.onnx", False)]
    command, rest = resolve(_words(lines[0][0]))
    assert "--bogus" in rest and "--bogus" not in options_of(command) and "--model" in options_of(command)


def _served_names() -> set[str]:
    """Metric names as Prometheus shows them: counters with ``_total``."""
    names = set()
    for spec in [*METRICS.values(), *STREAM_SERIES.values()]:
        counter = spec.kind is MetricKind.COUNTER and not spec.name.endswith("_total")
        names.add(spec.name + "_total" if counter else spec.name)
    return names


def test_every_metric_the_docs_name_is_served_and_every_served_metric_is_in_agent_md() -> None:
    served = _served_names()
    for page in AGENT_PAGES:
        named = set(re.findall(r"\bedgewatch_[a-z][a-z0-9_]*[a-z0-9]", _text(page)))
        # a histogram's series (_bucket, _count, _sum) are its own
        unknown = {n for n in named if n not in served and re.sub(r"_(bucket|count|sum)$", "", n) not in served}
        assert not unknown, f"docs/{page}.md names metrics the agent does not serve: {sorted(unknown)}"
    assert len(re.findall(r"\bedgewatch_[a-z]", _text("agent"))) >= 30  # the reader sees agent.md's list
    undocumented = {n for n in served if n not in _text("agent")}
    assert not undocumented, f"metrics missing from docs/agent.md, 'Operations': {sorted(undocumented)}"


# a command -> the pages that explain its flags (the operator's commands take agent run's --mqtt-* flags)
EXPLAINED = {
    "agent run": AGENT_PAGES,
    "agent check": ["agent"],
    "agent tags": ["sources"],
    "model keygen": ["agent"], "model sign": ["agent"], "model verify": ["agent"],
    "model publish": ["fleet", "agent"], "model rollback": ["fleet", "agent"], "model promote": ["fleet", "agent"],
    "fleet status": ["fleet", "agent"], "fleet shadow-report": ["fleet", "agent"], "fleet forget": ["fleet", "agent"],
    "plot": ["ui", "operators"],
    "fit": ["fit"],
}


@pytest.mark.parametrize("name", sorted(EXPLAINED))
def test_every_flag_of_a_command_is_documented(name: str) -> None:
    found = resolve(["edgewatch", *name.split()])
    assert found is not None
    text = "\n".join(_text(page) for page in EXPLAINED[name])
    missing = [param.opts[0] for param in found[0].params if isinstance(param, click.Option)
               and not any(re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", text) for opt in param.opts)]
    assert not missing, f"flags of edgewatch {name} that {EXPLAINED[name]} do not explain: {missing}"


def _toml_blocks(page: str) -> list[dict]:
    return [tomllib.loads(block) for block in re.findall(r"```toml\n(.*?)```", _text(page), re.S)]


def _loopback(url: str) -> str:
    """The doc's host and port as 127.0.0.1:9: the tables are built, never connected (network only to loopback)."""
    return re.sub(r"^([a-z]+://)(?:[^/@]*@)?[^/?]+", r"\g<1>127.0.0.1:9", url)


@pytest.mark.parametrize("page", ["operators", "sources"])
def test_the_config_snippets_are_read_as_they_stand(page: str, tmp_path: Path) -> None:
    blocks = _toml_blocks(page)
    assert blocks, f"no TOML snippet in docs/{page}.md"
    run = resolve(["edgewatch", "agent", "run"])
    assert run is not None
    token = tmp_path / "token"
    token.write_text("t\n")
    for data in blocks:
        to_default_map(run[0], flags_of_document(data, source=f"docs/{page}.md"))  # every key is a setting
        for table in data.get("source", []):
            table = {**table, "url": _loopback(table["url"])}
            for key in ("certificate", "private-key", "server-certificate"):  # the box's files, made here
                if key in table:
                    (tmp_path / key).write_bytes(b"")
                    table[key] = str(tmp_path / key)
            make_source(table, S0_FEATURES)
        for table in data.get("sink", []):
            table = {**table, "url": _loopback(table["url"])}
            if "token_file" in table:
                table["token_file"] = str(token)
            sink = make_sink(table, SinkContext(spool_dir=tmp_path / "spool"))
            close = getattr(sink, "close", None)
            if close is not None:
                close()


def test_the_doc_urls_of_sources_are_sources() -> None:
    """The URL forms sources.md and agent.md spell out in full, built (not connected) as the agent builds them."""
    text = _text("sources") + _text("agent")
    urls = set(re.findall(r"`((?:modbus|opcua|mqtt)://[^`\s]+)`", text))
    built = 0
    for url in urls:
        if "{" in url and "{feature}" not in url or "HOST" in url or "..." in url or "…" in url:
            continue  # a pattern with placeholders, not a URL
        if url.startswith("modbus://") and "registers=" not in url:
            continue  # a source's name (its URL without the query), not a source
        make_source(_loopback(url), S0_FEATURES)
        built += 1
    assert built >= 3


def _commands(command: click.Command, path: str = "edgewatch") -> list[tuple[str, click.Command]]:
    out = [(path, command)]
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            out += _commands(command.get_command(click.Context(command), name), f"{path} {name}")
    return out


def help_examples(command: click.Command) -> list[str]:
    """The ``edgewatch ...`` lines of a command's epilog (its examples), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", command.epilog or "")
    return [" ".join(line.split()) for line in (line.strip().removeprefix("Then: ") for line in text.splitlines())
            if line.startswith("edgewatch ")]


def test_every_help_example_names_a_command_and_options_that_exist() -> None:
    """The examples under `--help` are what a newcomer copies next: each names an existing command, options it
    has, and its required options (the root's "Start here" lines, each group's and command's examples)."""
    wrong, checked = [], 0
    for path, command in _commands(main):
        for line in help_examples(command):
            words = _words(line.split("  ")[0])  # the root's lines carry a note after two spaces
            found = resolve(words)
            if found is None:
                continue
            sub, rest = found
            known = options_of(sub)
            given = {w.split("=")[0] for w in rest if w.startswith("-")}
            wrong += [f"{flag} in {line!r} ({path})" for flag in given - known]
            for param in sub.params:
                if isinstance(param, click.Option) and param.required and not given & set(param.opts) \
                        and "--config" not in given:
                    wrong.append(f"{param.opts[0]} (required) missing from {line!r} ({path})")
            checked += 1
    assert not wrong, wrong
    assert checked >= 25 and help_examples(main), "the root's --help shows where to start"
    bare = [path for path, c in _commands(main) if isinstance(c, click.Group) and not help_examples(c)]
    assert not bare, f"every group's --help has examples: {bare}"
