"""The optional ``aux`` graph output and the composite ``max`` post-process of the model-file contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgewatch.agent.model import ScoringModel
from edgewatch.agent.postprocess import Levels, Likelihood, make_postprocessor
from edgewatch.contract import AUX_OUTPUT, INPUT_NAME, ModelCard, PostProcess
from edgewatch.contract.postprocess import LevelsParams, LikelihoodParams
from edgewatch.errors import BadModelFile
from tests.modelkit import make_card

LIKELIHOOD = {"short": 1, "learning": 20, "alert": 0.5, "hold": 10}
LEVELS = {"bins": 4, "range_rows": 16, "rest": 5}


def composite(window: int) -> tuple[PostProcess, list[str]]:
    post = PostProcess("max", parts=[PostProcess("likelihood", dict(LIKELIHOOD)),
                                     PostProcess("levels", dict(LEVELS), "aux:window")])
    return post, [f"window[{window}]", "last"]


def test_card_round_trip_with_aux_and_composite_post_process() -> None:
    post, aux = composite(16)
    card = make_card(window=16, features=["v"], postprocess=post, aux=aux)
    props = card.to_props()
    back = ModelCard.from_props(props)
    assert back == card
    assert back.aux == ["window[16]", "last"] and back.aux_width == 17
    assert back.aux_columns() == {"window": slice(0, 16), "last": slice(16, 17)}
    assert back.postprocess.parts[1].input == "aux:window"
    assert back.to_props() == props


def test_card_without_aux_is_written_as_before_and_still_read() -> None:
    card = make_card(window=8)
    props = card.to_props()
    assert "edgewatch.aux" not in props  # older readers keep reading single-step files
    assert props["edgewatch.postprocess"] == '{"kind":"none","params":{}}'
    assert ModelCard.from_props(props).aux == []


def test_card_refuses_an_input_naming_no_aux_column_and_bad_composites() -> None:
    post, _ = composite(16)
    with pytest.raises(BadModelFile, match="names no aux column"):
        make_card(window=16, features=["v"], postprocess=post)
    with pytest.raises(BadModelFile, match="needs at least one part"):
        make_card(postprocess=PostProcess("max"))
    with pytest.raises(BadModelFile, match="only a 'max' post-process has parts"):
        make_card(postprocess=PostProcess("likelihood", parts=[PostProcess()]))
    with pytest.raises(BadModelFile, match="is not 'name' or 'name\\[n\\]'"):
        make_card(aux=["window[0]"])
    props = make_card().to_props()
    props["edgewatch.postprocess"] = '{"kind":"max","parts":[{"kind":"none","inptu":"score"}]}'
    with pytest.raises(BadModelFile, match="unknown keys \\['inptu'\\]"):
        ModelCard.from_props(props)


def _write(path: Path, card: ModelCard, graph_aux: int) -> Path:
    """A graph whose score is the window's last value, with ``graph_aux`` aux columns (window, then last)."""
    w = card.window
    nodes = [helper.make_node("Squeeze", [INPUT_NAME, "ax2"], ["v"]),
             helper.make_node("Gather", ["v", "lastidx"], ["score"], axis=1),
             helper.make_node("Unsqueeze", ["score", "ax1"], ["feature_error"])]
    inits = [helper.make_tensor("ax2", TensorProto.INT64, [1], [2]),
             helper.make_tensor("ax1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("lastidx", TensorProto.INT64, [], [w - 1])]
    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
               helper.make_tensor_value_info("feature_error", TensorProto.FLOAT, ["batch", 1])]
    if graph_aux:
        inits.append(helper.make_tensor("tail", TensorProto.INT64, [graph_aux],
                                       (list(range(w)) + [w - 1])[:graph_aux]))
        nodes.append(helper.make_node("Gather", ["v", "tail"], [AUX_OUTPUT], axis=1))
        outputs.append(helper.make_tensor_value_info(AUX_OUTPUT, TensorProto.FLOAT, ["batch", graph_aux]))
    graph = helper.make_graph(nodes, "aux_test",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", w, 1])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in card.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, path)
    return path


def test_scoring_model_returns_aux_and_refuses_a_mismatch_between_graph_and_card(tmp_path: Path) -> None:
    w = 16
    post, aux = composite(w)
    with_aux = make_card(window=w, features=["v"], postprocess=post, aux=aux)
    m = ScoringModel(_write(tmp_path / "ok.onnx", with_aux, w + 1))
    x = np.arange(3 * w, dtype=np.float32).reshape(3, w, 1)
    batch = m.score_many(x)
    np.testing.assert_array_equal(batch.aux, np.concatenate([x[:, :, 0], x[:, -1:, 0]], axis=1))
    plain = make_card(window=w, features=["v"])
    assert ScoringModel(_write(tmp_path / "plain.onnx", plain, 0)).score_many(x).aux is None

    with pytest.raises(BadModelFile, match="card names no aux columns"):
        ScoringModel(_write(tmp_path / "graph-only.onnx", plain, w))
    with pytest.raises(BadModelFile, match="graph has no 'aux' output"):
        ScoringModel(_write(tmp_path / "card-only.onnx", with_aux, 0))
    with pytest.raises(BadModelFile, match="needs \\[batch, 17\\]"):
        ScoringModel(_write(tmp_path / "narrow.onnx", with_aux, 4))


def test_composite_is_the_max_of_its_parts_on_a_seeded_series() -> None:
    w, n = 16, 600
    rng = np.random.default_rng(7)
    x = np.cumsum(rng.normal(size=n)) + np.where(np.arange(n) > 400, 25.0, 0.0)
    ends = np.arange(w - 1, n)
    windows = np.lib.stride_tricks.sliding_window_view(x, w)
    raw = np.abs(np.diff(x, prepend=x[0]))[ends]  # any score: the absolute step
    post, aux_names = composite(w)
    card = make_card(window=w, features=["v"], postprocess=post, aux=aux_names)
    aux = np.concatenate([windows, windows[:, -1:]], axis=1)
    slots = np.zeros(len(ends), dtype=np.int64)

    comp = make_postprocessor(card.postprocess)
    got = np.concatenate([comp.update_many(slots[a:a + 50], raw[a:a + 50], aux[a:a + 50])
                          for a in range(0, len(ends), 50)])  # batches split anywhere
    like = Likelihood(LikelihoodParams.from_dict(LIKELIHOOD)).update_many(slots, raw)
    lev_all = Levels(LevelsParams.from_dict(LEVELS)).update_many(np.zeros(n, dtype=np.int64), x)
    np.testing.assert_array_equal(got, np.maximum(like, lev_all[ends]))
    assert like.max() > 0.5 and lev_all[ends].max() == 1.0  # both parts fire somewhere
    assert (got != like).any() and (got != lev_all[ends]).any()

    comp.reset(0)  # a reset stream starts over: the group is read whole again
    again = comp.update_many(slots, raw, aux)
    np.testing.assert_array_equal(again, got)
    with pytest.raises(ValueError, match="no aux was given"):
        comp.update_many(slots[:2], raw[:2])
