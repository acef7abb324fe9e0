"""The translator's data bounds and held-out scores: pairs over the piece limits left out (and
counted), the vocabulary size checked against what SentencePiece needs, the test split scored
through the exported graphs, and the INT8 variant measured against the float graphs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from training.config_schema import TranslateConfig
from training.data.parallel import ParallelCorpus, ParallelSplits
from training.errors import DataError, OptionError
from training.evaluate_translation import alignment_score, decode_corpus, score
from training.export.quantize import METHOD, quantize_folder, score_change, timed_pair
from training.export.seq2seq_graphs import DECODER_FILE, ENCODER_FILE, OnnxTranslator
from training.loop import TrainResult
from training.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_PIECES,
    TranslationTokenizer,
    minimum_vocab_size,
)


def check_vocab_size(vocab_size: int, train: ParallelCorpus) -> None:
    """OptionError naming the minimum when SentencePiece could not train at vocab_size."""
    needed = {side: minimum_vocab_size(text)
              for side, text in (("source", train.sources), ("target", train.targets))}
    side = max(needed, key=lambda k: needed[k])
    if vocab_size < needed[side]:
        raise OptionError(
            f"--vocab-size {vocab_size} is below the {needed[side]} pieces SentencePiece needs "
            f"for the {side} side of {train.origin} ({needed[side] - SPECIAL_PIECES} distinct "
            f"characters + {SPECIAL_PIECES} special pieces); use --vocab-size "
            f"{max(needed.values())} or more")


def pairs_within(limit: int, sources: Sequence[Sequence[int]],
                 targets: Sequence[Sequence[int]] | None = None) -> list[int]:
    """Indices of the pairs whose source (EOS included) and, when given, target (with the EOS
    the model appends) have at most limit pieces."""
    target_lengths = [len(t) + 1 for t in targets] if targets is not None else [0] * len(sources)
    return [i for i, (s, t) in enumerate(zip(sources, target_lengths, strict=True))
            if len(s) <= limit and t <= limit]


def require_pairs(kept: Sequence[int], split: str, origin: str, option: str,
                  limit: int) -> None:
    if not kept:
        raise DataError(f"{origin}: every {split} pair is longer than {option} {limit} pieces; "
                        f"raise {option}")


def bounded_held_out(data: ParallelSplits, tokenizer: TranslationTokenizer,
                     config: TranslateConfig) -> tuple[ParallelSplits, dict[str, int]]:
    """Dev and test without the pairs whose cost has no bound, and how many were left out.

    The dev loss runs teacher-forced attention over every source x target piece, in batches:
    one 5,000-character line asked for 20 GB. Dev pairs follow the training limit; test pairs whose
    source exceeds --max-source-pieces are the ones the server refuses, so they cannot be
    scored through it either.
    """
    dev_keep = pairs_within(config.train_piece_limit, tokenizer.encode_source(data.dev.sources),
                            tokenizer.encode_target(data.dev.targets))
    require_pairs(dev_keep, "dev", data.dev.origin, "--max-train-pieces", config.train_piece_limit)
    test_keep = pairs_within(config.max_source_pieces, tokenizer.encode_source(data.test.sources))
    require_pairs(test_keep, "test", data.test.origin, "--max-source-pieces",
                  config.max_source_pieces)
    bounded = replace(data, dev=data.dev.take(dev_keep), test=data.test.take(test_keep))
    return bounded, {"dev": len(data.dev) - len(dev_keep), "test": len(data.test) - len(test_keep)}


def report_long_pairs(left_out: dict[str, int], config: TranslateConfig) -> None:
    if any(left_out.values()):
        print(f"left out for length: {left_out['train']} train and {left_out['dev']} dev pairs "
              f"over --max-train-pieces {config.train_piece_limit}, {left_out['test']} test pairs "
              f"over --max-source-pieces {config.max_source_pieces} (pieces, EOS included)")


def quantize_translation(folder: Path, float_folder: Path, tokenizer: TranslationTokenizer,
                         test: Any, float_greedy: Any, float_beam: Any, greedy_options: Any,
                         options: Any, speed_sentences: int = 64,
                         one_at_a_time: int = 16) -> tuple[Any, Any, dict[str, Any]]:
    """Replace the staged graphs by their INT8 versions (the floats move to float_folder).
    Returns the INT8 greedy and beam decodes of the test split and the report: test BLEU of
    both graphs (the reported decoding, and greedy) and their greedy-decode speed, timed
    interleaved."""
    quantize_folder(folder, [ENCODER_FILE, DECODER_FILE], float_folder)
    greedy = decode_corpus(folder, tokenizer, test, greedy_options)
    beam = greedy if options.beam_size == 1 else decode_corpus(folder, tokenizer, test,
                                                               options)
    report: dict[str, Any] = {**METHOD, "graphs": [ENCODER_FILE, DECODER_FILE],
                              "score": f"test BLEU, {beam.describe()}"}
    report.update(score_change(score(float_beam, test)["bleu"], score(beam, test)["bleu"]))
    report["greedy_float_bleu"] = score(float_greedy, test)["bleu"]
    report["greedy_int8_bleu"] = score(greedy, test)["bleu"]
    sources = tokenizer.encode_source(test.sources[:speed_sentences])
    translators = [OnnxTranslator(f, PAD_ID, BOS_ID, EOS_ID) for f in (float_folder, folder)]
    for label, batch, repeats in (("batch1", 1, 3), ("batch", len(sources), 5)):
        work = sources[:one_at_a_time] if batch == 1 else sources
        runs = [lambda t=t, w=work, b=batch: t.translate_ids(w, greedy_options, b)
                for t in translators]
        report.update(timed_pair(*runs, label, repeats))
    report["batch"] = len(sources)
    report["speed_of"] = (f"greedy decodes of the first {one_at_a_time} test sentences one at "
                          f"a time (batch1) and of the first {len(sources)} at once (batch)")
    return greedy, beam, report


def test_metrics(greedy: Any, beam: Any, data: ParallelSplits,
                 tokenizer: TranslationTokenizer, result: TrainResult,
                 left_out: int) -> dict[str, Any]:
    main = score(beam, data.test)
    metrics: dict[str, Any] = {
        "split": "test", "n_test": len(data.test),
        # not scored: the server refuses these sources (limits.max_source_pieces)
        "test_pairs_left_out_over_limit": left_out,
        "bleu": main["bleu"], "chrf": main["chrf"],
        "bleu_signature": main["bleu_signature"], "chrf_signature": main["chrf_signature"],
        "decoding": main["decoding"],
        "beam": main, "greedy": score(greedy, data.test),
        "dev_greedy_bleu_best_epoch": result.best_val.get("bleu"),
        "dev_loss_best_epoch": result.best_val.get("loss"),
        "evaluated_with": "onnxruntime CPUExecutionProvider on the exported encoder.onnx + "
                          "decoder_step.onnx, search from serving.decoding, detokenised with "
                          "target.model, sacrebleu against the raw references",
        "samples": [{"source": s, "reference": r, "translation": h} for s, r, h in
                    zip(data.test.sources[:5], data.test.targets[:5], beam.texts[:5],
                        strict=True)],
    }
    if data.test.alignments is not None:
        metrics["attention_alignment"] = {
            "greedy": alignment_score(greedy, tokenizer, data.test).manifest_entry(),
            "beam": alignment_score(beam, tokenizer, data.test).manifest_entry(),
            "definition": "share of generated words that equal the reference word at their "
                          "position and whose attention (summed over the word's pieces, "
                          "gathered per source word) peaks on the aligned source word",
        }
    return metrics


def summary(metrics: dict[str, Any], parity: Any, result: TrainResult, data: ParallelSplits,
            translations: list[str], quantization: dict[str, Any] | None) -> str:
    g = metrics["greedy"]
    lines = [
        f"test BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  "
        f"({metrics['n_test']} held-out pairs; {metrics['decoding']})",
        f"greedy:   BLEU {g['bleu']:.2f}  chrF {g['chrf']:.2f}",
        f"  {metrics['bleu_signature']}", f"  {metrics['chrf_signature']}"]
    if "attention_alignment" in metrics:
        a = metrics["attention_alignment"]["greedy"]
        lines.append(f"attention on the aligned source word: {a['accuracy']:.1%} of "
                     f"{a['words']} generated words (greedy; {a['exact_sentences']}/"
                     f"{a['sentences']} sentences exactly right)")
    lines.append(
        f"best epoch {result.best_epoch}/{result.epochs_run} (dev loss "
        f"{result.best_val.get('loss', float('nan')):.4f}, dev greedy BLEU "
        f"{result.best_val.get('bleu', float('nan')):.2f}); trained {result.seconds:.0f}s; "
        f"parity max |diff| {parity.max_abs_diff:.2e} ({parity.exporter} exporter), greedy "
        f"tokens identical on {parity.greedy_sentences} sentences")
    for source, reference, hyp in zip(data.test.sources[:3], data.test.targets[:3],
                                      translations[:3], strict=False):
        lines.append(f"  {source}\n    ref: {reference}\n    out: {hyp}")
    if quantization is not None:
        q = quantization
        lines.append(f"int8: test BLEU {q['int8_score']:.2f} vs float {q['float_score']:.2f}; "
                     f"greedy decode {q['speedup_batch1']}x the float speed one sentence at a "
                     f"time, {q['speedup_batch']}x at {q['batch']} sentences")
    return "\n".join(lines)
