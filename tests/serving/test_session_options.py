"""onnxruntime threads: spinning off for single-graph models and on for decoder steps; one
thread for decoder steps and recurrent encoders and one per core (of a worker's share) for
graphs of a few large operators (classifiers, CNN encoders), unless the server's flags say
otherwise."""

import os

import pytest

from serving.config import parse_config
from serving.runners import load_runner
from serving.runtime import session as session_module
from serving.runtime.session import SessionConfig, session_options
from serving.supervisor import worker_command
from tests.serving.synthetic import publish_classifier
from tests.serving.synthetic_seq2seq import publish_captioner, publish_translator

SPIN = "session.intra_op.allow_spinning"


def spinning_of(version, config, monkeypatch):
    seen = []
    real = session_module.session_options

    def recording(cfg):
        opts = real(cfg)
        seen.append(opts.get_session_config_entry(SPIN) if cfg.allow_spinning is not None
                    else "default")
        return opts

    monkeypatch.setattr(session_module, "session_options", recording)
    load_runner(version, config)
    return set(seen)


def test_session_options_set_spinning_only_when_decided():
    assert session_options(SessionConfig(allow_spinning=False)) \
        .get_session_config_entry(SPIN) == "0"
    assert session_options(SessionConfig(allow_spinning=True)) \
        .get_session_config_entry(SPIN) == "1"


@pytest.mark.parametrize(("flag", "classifier", "translator"), [
    ("auto", {"0"}, {"1"}), ("on", {"1"}, {"1"}), ("off", {"0"}, {"0"})])
def test_runners_choose_spinning_by_graph_shape_unless_told(tmp_path, monkeypatch, flag,
                                                            classifier, translator):
    config = parse_config(["--ort-spinning", flag]).session
    assert spinning_of(publish_classifier(tmp_path, "c"), config, monkeypatch) == classifier
    assert spinning_of(publish_translator(tmp_path), config, monkeypatch) == translator


def threads_of(version, config):
    runner = load_runner(version, config)
    return {role: s.get_session_options().intra_op_num_threads
            for role, s in runner.sessions.items()}


@pytest.mark.parametrize(("flags", "share"), [
    ([], 0),  # 0: onnxruntime's own, one per core
    (["--core-share", "3"], 3)])  # a worker of --processes: its share of the cores
def test_runners_choose_threads_by_graph_shape(tmp_path, flags, share):
    config = parse_config(flags).session
    assert threads_of(publish_classifier(tmp_path, "c"), config) == {"model": share}
    # a translator's recurrent encoder and decoder step: operators too small to share
    assert threads_of(publish_translator(tmp_path), config) == {"encoder": 1,
                                                               "decoder_step": 1}
    # a captioner's CNN encoder is a few large operators, as a classifier is
    assert threads_of(publish_captioner(tmp_path), config) == {"encoder": share,
                                                              "decoder_step": 1}


def test_the_threads_flag_beats_the_graphs(tmp_path):
    config = parse_config(["--intra-op-threads", "2", "--core-share", "3"]).session
    for version in (publish_classifier(tmp_path, "c"), publish_translator(tmp_path),
                    publish_captioner(tmp_path)):
        assert set(threads_of(version, config).values()) == {2}


def test_each_worker_is_told_its_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    argv = ["--repository", "r", "--processes", "2"]
    command = worker_command(argv, parse_config(argv), 0)
    worker = parse_config(command[command.index("serving") + 1:])
    assert worker.processes == 1 and worker.session.core_share == 4
    assert worker.session.intra_op_threads == 0  # the runners still decide by their graphs


@pytest.mark.parametrize("flag", ["--intra-op-threads", "--inter-op-threads"])
def test_a_negative_thread_count_is_refused_at_start(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config([flag, "-1"])
    assert exit_.value.code == 2
    assert f"{flag} must be at least 0" in capsys.readouterr().err
