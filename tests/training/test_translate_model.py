"""Attention masking, the encoder's padding independence, and the decoder's two paths."""

from __future__ import annotations

import pytest
import torch

from training.models.attention import ATTENTION_TYPES, build_attention, masked_softmax
from training.models.seq2seq import Seq2Seq, Seq2SeqConfig, reverse_padded


def attention_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(3, 4, 8, generator=g) * 3  # large scores: softmax near saturation
    memory = torch.randn(3, 5, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    return query, memory, mask


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_padding_gets_exactly_zero_and_rows_sum_to_one(kind: str) -> None:
    torch.manual_seed(0)
    attention = build_attention(kind, 8, 8, 6)
    query, memory, mask = attention_inputs()
    context, weights = attention(query, memory, mask)
    assert weights.shape == (3, 4, 5) and context.shape == (3, 4, 8)
    assert torch.all(weights[~mask.unsqueeze(1).expand_as(weights)] == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4), atol=1e-6, rtol=0)
    assert torch.all(weights[mask.unsqueeze(1).expand_as(weights)] > 0)
    # whatever sits in the padded memory cannot leak into the context
    poisoned = memory.masked_fill(~mask.unsqueeze(-1), 1e4)
    context2, weights2 = attention(query, poisoned, mask)
    assert torch.equal(weights2, weights)
    torch.testing.assert_close(context2, context)
    # one query per sentence (a decoder step) computes the same as a sequence of queries
    step_context, step_weights = attention(query[:, 2], memory, mask)
    torch.testing.assert_close(step_weights, weights[:, 2])
    torch.testing.assert_close(step_context, context[:, 2])


def test_masked_softmax_and_dot_sizes() -> None:
    scores = torch.tensor([[[1000.0, -1000.0, 5.0]]])
    w = masked_softmax(scores, torch.tensor([[False, True, True]]))
    assert w[0, 0, 0] == 0.0 and w[0, 0].sum() == 1.0
    with pytest.raises(ValueError, match="equal query and memory sizes"):
        build_attention("dot", 8, 16)
    with pytest.raises(ValueError, match="unknown attention"):
        build_attention("cosine", 8, 8)


def test_reverse_padded_reverses_only_the_real_steps() -> None:
    x = torch.arange(8.0).view(2, 4, 1)
    out = reverse_padded(x, torch.tensor([4, 2]))
    assert out[..., 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_padded(out, torch.tensor([4, 2])), x)


def tiny(rnn: str = "gru", attention: str = "additive", input_feeding: bool = False,
         layers: int = 2) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(30, 20, embedding_dim=8, hidden=12, encoder_hidden=6, layers=layers,
                        rnn=rnn, attention=attention, attention_dim=7, dropout=0.0,
                        input_feeding=input_feeding)
    return Seq2Seq(cfg).eval()


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_a_sentence_encodes_the_same_alone_and_padded_in_a_batch(rnn: str) -> None:
    model = tiny(rnn)
    short = [5, 9, 4, 3]
    batch = torch.tensor([[7, 8, 9, 10, 11, 12, 3], short + [0, 0, 0]])
    with torch.no_grad():
        memory, mask, state = model.encode(batch, torch.tensor([7, 4]))
        alone_memory, _, alone_state = model.encode(torch.tensor([short]), torch.tensor([4]))
    torch.testing.assert_close(memory[1, :4], alone_memory[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(state[1], alone_state[0], atol=1e-6, rtol=0)
    assert torch.all(memory[1, 4:] == 0) and mask[1].tolist() == [True] * 4 + [False] * 3
    assert state.shape == (2, model.state_dim)
    assert model.state_dim == 2 * 12 * (2 if rnn == "lstm" else 1)


@pytest.mark.parametrize(("rnn", "attention", "input_feeding"), [
    ("gru", "additive", False), ("lstm", "general", False), ("gru", "dot", True),
    ("lstm", "additive", True)])
def test_teacher_forcing_equals_the_step_by_step_decoder(rnn: str, attention: str,
                                                         input_feeding: bool) -> None:
    model = tiny(rnn, attention, input_feeding)
    src = torch.tensor([[7, 8, 9, 3], [5, 3, 0, 0]])
    lengths = torch.tensor([4, 2])
    tgt_in = torch.tensor([[2, 4, 5, 6], [2, 7, 0, 0]])
    with torch.no_grad():
        logits, weights = model(src, lengths, tgt_in)
        memory, mask, state = model.encode(src, lengths)
        for t in range(tgt_in.shape[1]):
            step_logits, state, step_weights = model.step(tgt_in[:, t], state, memory, mask)
            torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=0)
            torch.testing.assert_close(step_weights, weights[:, t], atol=1e-6, rtol=0)
    assert logits.shape == (2, 4, 20)
    assert torch.all(weights[1, :, 2:] == 0)


@pytest.mark.parametrize("attention", ATTENTION_TYPES)
def test_the_served_step_over_cached_keys_is_the_step(attention: str) -> None:
    """The exported graphs pass memory with its attention keys computed once per source;
    stepping over that is the model's own step, which computes the keys every time."""
    model = tiny("gru", attention, False)
    src, lengths = torch.tensor([[7, 8, 9, 3], [5, 3, 0, 0]]), torch.tensor([4, 2])
    with torch.no_grad():
        memory, mask, state = model.encode(src, lengths)
        served = model.served_memory(memory)
        cached = model.decoder.attention.caches_keys
        assert served.shape[-1] > model.memory_dim if cached else torch.equal(served, memory)
        torch.testing.assert_close(served[..., :model.memory_dim], memory, atol=0, rtol=0)
        plain_state, served_state = state, state
        for prev in ([2, 2], [4, 7], [5, 9]):
            prev_ids = torch.tensor(prev)
            logits, plain_state, weights = model.step(prev_ids, plain_state, memory, mask)
            s_logits, served_state, s_weights = model.served_step(prev_ids, served_state,
                                                                  served, mask)
            torch.testing.assert_close(s_logits, logits, atol=1e-6, rtol=0)
            torch.testing.assert_close(s_weights, weights, atol=1e-7, rtol=0)
            torch.testing.assert_close(served_state, plain_state, atol=1e-6, rtol=0)


def test_scheduled_sampling_feeds_own_predictions() -> None:
    model = tiny()
    src, lengths = torch.tensor([[7, 8, 9, 3]]), torch.tensor([4])
    tgt_in = torch.tensor([[2, 4, 5, 6, 7]])
    with torch.no_grad():
        forced, _ = model(src, lengths, tgt_in, teacher_forcing=1.0)
        own, _ = model(src, lengths, tgt_in, teacher_forcing=0.0)
        memory, mask, state = model.encode(src, lengths)
        prev, expected = tgt_in[:, 0], []
        for _ in range(5):
            logits, state, _ = model.step(prev, state, memory, mask)
            expected.append(logits)
            prev = logits.argmax(-1)
    torch.testing.assert_close(own, torch.stack(expected, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(own[:, 0], forced[:, 0])
    assert not torch.allclose(own[:, 1:], forced[:, 1:])  # later inputs differ from the gold


def test_tied_embeddings_share_one_matrix() -> None:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(30, 20, embedding_dim=12, hidden=12, encoder_hidden=6,
                        tie_embeddings=True)
    model = Seq2Seq(cfg)
    assert model.decoder.output.weight is model.decoder.embed.weight
    untied = Seq2Seq(Seq2SeqConfig(30, 20, embedding_dim=12, hidden=12, encoder_hidden=6))
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(p.numel() for p in untied.parameters()) - 20 * 12
    with pytest.raises(ValueError, match="tied embeddings need embedding_dim == hidden"):
        Seq2Seq(Seq2SeqConfig(30, 20, embedding_dim=8, hidden=12, tie_embeddings=True))
