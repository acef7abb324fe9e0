"""Each benchmark runs end to end in a tiny configuration and returns the rows its tables
print. No timing is asserted: these machines are too noisy for that, and the figures are for
`python -m bench`, not for tests."""

from pathlib import Path

import pytest

from bench import decoding_speed, eager_vs_onnxruntime, models, server_throughput
from bench.__main__ import markdown

TIMING = {"eager_ms", "onnxruntime_ms", "speedup"}


@pytest.fixture(scope="module")
def small_translation() -> models.Translation:
    return models.translation(vocab=300, embedding_dim=16, hidden=16, encoder_hidden=8,
                              attention_dim=8)


def test_eager_vs_onnxruntime_image_models(tmp_path: Path) -> None:
    rows = eager_vs_onnxruntime.image_rows("tagger-cnn", models.tagger_graph("cnn"),
                                           models.TAGGER_SHAPE, tmp_path, 1, True, (1, 2))
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert TIMING | {"model", "work", "batch", "threads"} <= r.keys()
        assert r["eager_ms"] > 0 and r["onnxruntime_ms"] > 0
    assert "| tagger-cnn |" in markdown(rows)


def test_eager_vs_onnxruntime_greedy_translation(tmp_path: Path,
                                                 small_translation: models.Translation) -> None:
    rows = eager_vs_onnxruntime.translation_rows(tmp_path, 1, True, (1, 3), small_translation)
    assert [r["batch"] for r in rows] == [1, 3]
    for r in rows:
        assert TIMING | {"work", "same_tokens"} <= r.keys()
        # the same model in both runtimes decodes the same tokens
        assert r["same_tokens"] == 1.0


def test_eager_vs_onnxruntime_greedy_captioning(tmp_path: Path) -> None:
    graph = models.captioner(size=16, channels=(4, 8), feature_dim=8, hidden=8)
    rows = eager_vs_onnxruntime.caption_rows(tmp_path, 1, True, (2,), graph)
    assert len(rows) == 1 and rows[0]["model"] == "caption (lstm, 4x4 grid)"
    assert TIMING | {"same_tokens"} <= rows[0].keys() and rows[0]["same_tokens"] == 1.0


def test_decoding_speed_in_process_and_served(small_translation: models.Translation) -> None:
    rows = decoding_speed.run(quick=True, batches=(2,), translation=small_translation)
    speed = [r for r in rows if r["benchmark"] == "decoding_speed"]
    assert [r["where"] for r in speed] == ["in-process", "server"]
    for r in speed:
        assert {"greedy_sentences_s", "beam4_sentences_s", "beam4_cost_x",
                "max_length"} <= r.keys()
        assert r["greedy_sentences_s"] > 0 and r["beam4_sentences_s"] > 0
    concurrent = [r for r in rows if r["benchmark"] == "translate_concurrency"]
    assert [(r["batching"], r["concurrency"]) for r in concurrent] == [("off", 32), ("on", 32)]
    assert all(r["sentences_s"] > 0 and r["errors"] == 0 for r in concurrent)
    assert concurrent[1]["vs_no_batching"] > 0
    binding = [r for r in rows if r["benchmark"] == "decoder_io_binding"]
    assert [r["search"] for r in binding] == ["greedy", "beam 4"]
    assert {"session_run_ms", "io_binding_ms", "io_binding_speedup"} <= binding[0].keys()


def test_server_throughput_rows() -> None:
    rows = server_throughput.run(todo=[(1, "mlp", "smallserve", 2), (1, "mlp", "oip", 1)],
                                 seconds=0.3)
    measured = [r for r in rows if r["api"] != "health"]
    assert {(r["api"], r["batching"]) for r in measured} == {
        (api, batching) for api in ("smallserve", "oip")
        for batching in ("off", "on", "on, 5 ms delay")}
    for r in measured:
        assert {"throughput_rps", "p50_ms", "p99_ms", "rows_per_run", "errors"} <= r.keys()
        assert r["requests"] > 0 and r["errors"] == 0
        assert r["rows_per_run"] >= 1
    assert [r["api"] for r in rows].count("health") == 1
    for r in (r for r in measured if r["batching"] != "off"):
        # what batching could give at best (the no-model floor over no batching)
        assert r["ceiling_vs_no_batching"] > 0 and "vs_no_batching" in r


def test_rest_vs_grpc_side_by_side() -> None:
    from bench import rest_vs_grpc
    rows = rest_vs_grpc.run(quick=True, seconds=0.3, rounds=1)
    assert [(r["api"].split()[0], r["concurrency"]) for r in rows] == [
        ("grpc", 1), ("rest", 1), ("grpc", 32), ("rest", 32)]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in rows)
    assert rows[0]["throughput_vs_grpc"] == 1.0


def test_triton_vs_smallserve_side_by_side(small_translation: models.Translation) -> None:
    from bench import triton_vs_smallserve
    from serving.triton.wheel import ensure_env
    if (reason := ensure_env()) is not None:
        pytest.skip(reason)
    rows = triton_vs_smallserve.run(quick=True, seconds=0.3, rounds=1,
                                    translation=small_translation)
    assert [(r["work"].split()[0], r["concurrency"], r["server"]) for r in rows] == [
        (work, c, server) for work, c in (("classify", 1), ("classify", 8), ("classify", 32),
                                          ("translate", 32))
        for server in ("smallserve", "triton")]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in rows)
    assert rows[0]["throughput_vs_smallserve"] == 1.0 and rows[1]["throughput_vs_smallserve"] > 0
    assert all(r["rows_per_run"] == "-" or r["rows_per_run"] > 0 for r in rows)


@pytest.mark.slow
def test_hostile_load_step_vs_merge(request: pytest.FixtureRequest,
                                    small_translation: models.Translation) -> None:
    """Two minutes of load processes on two cores: run with -m slow."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("two minutes of load: run with -m slow")
    from bench import hostile_load
    rows = hostile_load.run(quick=True, seconds=1.0, translation=small_translation)
    flooded = [r for r in rows if r["benchmark"] == "flooded_translator"]
    assert {(r["decode_batching"], r["calls"].split(":")[0]) for r in flooded} == {
        (m, c) for m in ("step", "merge")
        for c in ("one-word greedy Translate", "one-image Classify", "flood")}
    step = [r for r in flooded if r["decode_batching"] == "step"]
    assert all(r.get("errors") == 0 for r in step), step
    callers = [r for r in rows if r["benchmark"] == "translate_32_callers"]
    assert [(r["sentences"], r["decode_batching"]) for r in callers] == [
        (s, m) for s in ("identical", "5-35 steps") for m in ("step", "merge")]
    assert all(r["errors"] == 0 for r in callers)
    assert callers[0]["vs_merge"] > 0 and callers[2]["vs_merge"] > 0


def test_per_call_cost_beside_the_grpc_floor() -> None:
    from bench import per_call_cost
    rows = per_call_cost.run(quick=True, seconds=0.3, rounds=1, triton=False)
    measured = [r for r in rows if "calls_per_s" in r]
    assert [(r["api"], r["concurrency"], r["server"]) for r in measured] == [
        (api, c, server) for c in (1, 8, 32) for api in ("smallserve", "oip")
        for server in ("smallserve", "grpc floor", "grpc floor uvloop", "grpc floor + model")]
    # the floor + model answers only once its run of the model succeeded
    assert all(r["errors"] == 0 and r["calls_per_s"] > 0 for r in measured)
    assert all(r["vs_floor"] == 1.0 for r in measured if r["server"] == "grpc floor")
    assert all(r["vs_model_floor"] == 1.0 for r in measured
               if r["server"] == "grpc floor + model")
    assert rows[-1] == {"benchmark": "per_call_cost", "server": "triton",
                        "skipped": "not asked for"}
