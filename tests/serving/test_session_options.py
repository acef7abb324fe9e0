"""onnxruntime thread spinning: off for single-graph models, on for decoder steps, unless the
server's --ort-spinning says otherwise."""

import pytest

from serving.config import parse_config
from serving.runners import load_runner
from serving.runtime import session as session_module
from serving.runtime.session import SessionConfig, session_options
from tests.serving.synthetic import publish_classifier
from tests.serving.synthetic_seq2seq import publish_translator

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
