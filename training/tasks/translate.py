"""Attention encoder-decoder translation (Bahdanau et al. 2014; Luong et al. 2015).

Data: --train/--dev/--test, each a source<TAB>target TSV file (--swap for target<TAB>source)
or two line-aligned files (SOURCE TARGET); or --data-dir with train.tsv, dev.tsv and test.tsv.
With neither, the bundled Spanish->English toy grammar (training/data/toy_grammar.py), whose
known word alignments let the run also score where the attention looks.

SentencePiece models (one per language) are trained on the training split only. The model is a
bidirectional GRU/LSTM encoder, a bridge to the decoder state, and a GRU/LSTM decoder with dot,
general or additive attention; trained with teacher forcing (optionally scheduled sampling),
label smoothing, dropout and gradient clipping. The best epoch by dev loss is exported as
encoder.onnx + decoder_step.onnx, gated on parity with PyTorch (per-step outputs and whole
greedy decodes), then the held-out test split is translated through the exported graphs with
the server's own search code and scored with sacrebleu (BLEU, chrF and their signatures).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import sacrebleu
import sentencepiece
import torch
import torch.nn.functional as F

from training.data.parallel import ParallelCorpus, ParallelSplits, load_splits
from training.data.toy_grammar import DEFAULT_SIZES, toy_splits
from training.data.translation_batches import TranslationBatches, make_batch
from training.distributed import finish_training, world
from training.errors import DataError, OptionError
from training.evaluate_translation import alignment_score, decode_corpus, score
from training.export.onnx_export import EXPORTERS
from training.export.quantize import METHOD, quantize_folder, score_change, timed_pair
from training.export.seq2seq_graphs import (
    DECODER_FILE,
    DEFAULT_EXPORTER,
    ENCODER_FILE,
    PARITY_TOLERANCE,
    OnnxTranslator,
    SearchOptions,
    check_translation_parity,
    export_translation_graphs,
    greedy_torch,
)
from training.loop import StepOutput, TrainResult, fit
from training.models.attention import ATTENTION_TYPES
from training.models.seq2seq import RNN_TYPES, Seq2Seq, Seq2SeqConfig
from training.outputs import claimed_outputs, staged_version
from training.seeding import seed_everything
from training.tasks.common import (
    add_common_arguments,
    build_optimizer,
    build_penalty,
    build_scheduler,
    jsonable_config,
    library_versions,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    resolve_device,
    train_config,
    unit_interval,
)
from training.tokenizer import (
    BOS_ID,
    EOS_ID,
    MODEL_TYPES,
    PAD_ID,
    SPECIAL_PIECES,
    TranslationTokenizer,
    minimum_vocab_size,
)
from training.translation_metrics import corpus_scores

HELP = "attention encoder-decoder translation (TSV / aligned files or the bundled toy grammar)"
EVAL_BATCH = 64

# Unset options take these. "files": chosen on the dev split of tatoeba-spa-eng (16.5k pairs)
# for a run of under 30 minutes on two shared CPU cores. "toy": the bundled grammar, learnt
# in a minute or two.
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "files": {"epochs": 12, "optimizer": "adam", "lr": 2e-3, "batch_size": 128, "dropout": 0.3,
              "vocab_size": 3000, "embedding_dim": 256, "hidden": 256, "encoder_hidden": 128,
              "attention_dim": 128, "label_smoothing": 0.1, "grad_clip": 1.0,
              "name": "translate"},
    "toy": {"epochs": 8, "optimizer": "adam", "lr": 3e-3, "batch_size": 32, "dropout": 0.1,
            "vocab_size": 1000, "embedding_dim": 64, "hidden": 128, "encoder_hidden": 64,
            "attention_dim": 64, "label_smoothing": 0.0, "grad_clip": 1.0,
            "name": "translate-toy"},
}


def _paths(text: str) -> Path:
    return Path(text)


def _sizes(text: str) -> tuple[int, int, int]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected TRAIN,DEV,TEST sizes like 6000,500,500, "
                                         f"got {text!r}")
    return sizes  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.set_defaults(parity_tolerance=PARITY_TOLERANCE)
    data = parser.add_argument_group(
        "data", "TSV files (source<TAB>target) or SOURCE TARGET pairs of line-aligned files; "
        "--data-dir holds train.tsv, dev.tsv, test.tsv. None given: the bundled toy grammar.")
    for split in ("train", "dev", "test"):
        data.add_argument(f"--{split}", type=_paths, nargs="+", default=None,
                          metavar="FILE", help=f"the {split} split: FILE.tsv or SOURCE TARGET")
    data.add_argument("--swap", action="store_true",
                      help="translate the second column / file into the first")
    data.add_argument("--toy-sizes", type=_sizes, default=DEFAULT_SIZES,
                      metavar="TRAIN,DEV,TEST",
                      help="sentences per split of the bundled grammar (default: "
                           + ",".join(map(str, DEFAULT_SIZES)) + ")")
    data.add_argument("--limit-train", type=positive_int, default=None, metavar="N",
                      help="train on the first N training pairs only (quick runs)")
    data.add_argument("--max-train-pieces", type=positive_int, default=None, metavar="N",
                      help="leave out training and dev pairs with more pieces on either "
                           "side, counted in the output and the manifest "
                           "(default: --max-source-pieces)")

    tok = parser.add_argument_group("tokenizer (SentencePiece, trained on the training split)")
    tok.add_argument("--vocab-size", type=positive_int, default=None,
                     help="pieces per language, an upper bound on small corpora "
                          "(default: 3000; toy 1000)")
    tok.add_argument("--sp-model-type", choices=MODEL_TYPES, default="unigram",
                     help="(default: %(default)s)")

    model = parser.add_argument_group(
        "model", "Unset options take per-data defaults: " + "; ".join(
            f"{k}: " + ", ".join(f"{o}={v}" for o, v in d.items() if o != "name")
            for k, d in DATA_DEFAULTS.items()))
    model.add_argument("--rnn", choices=RNN_TYPES, default="gru",
                       help="encoder and decoder cell (default: %(default)s)")
    model.add_argument("--attention", choices=ATTENTION_TYPES, default="additive",
                       help="score: dot q.m, general q.Wm, additive v.tanh(Wq q + Wm m) "
                            "(Bahdanau) (default: %(default)s)")
    model.add_argument("--embedding-dim", type=positive_int, default=None)
    model.add_argument("--hidden", type=positive_int, default=None,
                       help="decoder state size")
    model.add_argument("--encoder-hidden", type=positive_int, default=None,
                       help="encoder size per direction (memory is twice this; dot attention "
                            "needs 2 x this = --hidden)")
    model.add_argument("--layers", type=positive_int, default=1,
                       help="RNN layers of encoder and decoder (default: %(default)s)")
    model.add_argument("--attention-dim", type=positive_int, default=None,
                       help="hidden size of additive attention")
    model.add_argument("--input-feeding", action="store_true",
                       help="feed the previous attentional vector to the decoder RNN (Luong); "
                            "slower: training runs step by step")
    model.add_argument("--tie-embeddings", action="store_true",
                       help="the output layer reuses the target embedding matrix (fewer "
                            "parameters; needs --embedding-dim = --hidden)")
    model.add_argument("--teacher-forcing", type=unit_interval, default=1.0,
                       help="share of steps fed the reference token; below 1 the rest feed "
                            "the model's own prediction (scheduled sampling) "
                            "(default: %(default)s)")
    model.add_argument("--label-smoothing", type=probability, default=None,
                       help="(default: 0.1; toy 0)")
    model.add_argument("--threads", type=positive_int, default=1,
                       help="CPU threads for PyTorch and onnxruntime. The RNN steps are small "
                            "matrix products that gain little from more; on a shared machine "
                            "extra threads spin and can make an epoch 10x slower "
                            "(default: %(default)s)")

    dec = parser.add_argument_group("decoding (stored in the manifest for the server)")
    dec.add_argument("--beam-size", type=positive_int, default=4,
                     help="the server's default, and what the reported test BLEU uses; greedy "
                          "is reported beside it (default: %(default)s)")
    dec.add_argument("--length-penalty", type=non_negative_float, default=0.6,
                     help="GNMT alpha for beam search (default: %(default)s)")
    dec.add_argument("--max-length-ratio", type=positive_float, default=2.0,
                     help="output at most RATIO x source pieces + OFFSET (default: %(default)s)")
    dec.add_argument("--max-length-offset", type=non_negative_int, default=10,
                     help="(default: %(default)s)")
    dec.add_argument("--max-source-pieces", type=positive_int, default=100,
                     help="longest source the server accepts, in pieces with EOS; test "
                          "pairs over it are left out of the scores, and counted "
                          "(default: %(default)s)")
    dec.add_argument("--exporter", choices=EXPORTERS, default=DEFAULT_EXPORTER,
                     help="ONNX exporter (the dynamo one mis-exports the RNNs on torch 2.13; "
                          "see training/export/seq2seq_graphs.py) (default: %(default)s)")
    dec.add_argument("--quantize", choices=["none", "int8"], default="none",
                     help="publish INT8 dynamically quantised graphs, with the test BLEU and "
                          "greedy-decode speed of both against the float graphs in the "
                          "manifest (default: %(default)s)")
    dec.add_argument("--parity-sentences", type=positive_int, default=200,
                     help="held-out sentences decoded greedily through both PyTorch and "
                          "onnxruntime, which must agree on every token (default: %(default)s)")


def data_kind(args: argparse.Namespace) -> str:
    given = args.data_dir is not None or any((args.train, args.dev, args.test))
    return "files" if given else "toy"


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    resolved = argparse.Namespace(**vars(args))
    resolved.data_kind = data_kind(args)
    for key, value in DATA_DEFAULTS[resolved.data_kind].items():
        if getattr(resolved, key, None) is None:
            setattr(resolved, key, value)
    if resolved.max_train_pieces is None:
        resolved.max_train_pieces = resolved.max_source_pieces
    if resolved.checkpoint_dir is None:
        resolved.checkpoint_dir = Path("runs") / resolved.name
    return resolved


def load_data(args: argparse.Namespace) -> ParallelSplits:
    if args.data_kind == "toy":
        return toy_splits(args.toy_sizes)
    return load_splits(args.train, args.dev, args.test, args.data_dir, args.swap)


def run(args: argparse.Namespace) -> int:
    args = resolve_defaults(args)
    with claimed_outputs(args.repository, args.checkpoint_dir):
        return train_and_publish(args)


def train_and_publish(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.device_used = str(device)
    data = load_data(args)
    train = data.train.head(args.limit_train) if args.limit_train else data.train
    check_vocab_size(args.vocab_size, train)
    tokenizer = TranslationTokenizer.train(train.sources, train.targets, args.vocab_size,
                                           args.sp_model_type)
    sources, targets = tokenizer.encode_source(train.sources), tokenizer.encode_target(
        train.targets)
    keep = pairs_within(args.max_train_pieces, sources, targets)
    require_pairs(keep, "training", train.origin, "--max-train-pieces", args.max_train_pieces)
    sources, targets = [sources[i] for i in keep], [targets[i] for i in keep]
    data, left_out = bounded_held_out(data, tokenizer, args)
    args.long_pairs_left_out = {"train": len(train) - len(keep), **left_out}
    args.dropped_long_pairs = args.long_pairs_left_out["train"]
    report_long_pairs(args.long_pairs_left_out, args)
    print(f"translate: {len(sources)} train / {len(data.dev)} dev / {len(data.test)} test "
          f"pairs from {data.source}; SentencePiece {args.sp_model_type} "
          f"{tokenizer.source_vocab_size} source / {tokenizer.target_vocab_size} target "
          f"pieces; device {device}, seed {args.seed}")

    cfg = Seq2SeqConfig(
        source_vocab=tokenizer.source_vocab_size, target_vocab=tokenizer.target_vocab_size,
        embedding_dim=args.embedding_dim, hidden=args.hidden,
        encoder_hidden=args.encoder_hidden, layers=args.layers, rnn=args.rnn,
        attention=args.attention, attention_dim=args.attention_dim, dropout=args.dropout,
        input_feeding=args.input_feeding, tie_embeddings=args.tie_embeddings, pad_id=PAD_ID)
    model = Seq2Seq(cfg).to(device)
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters, {cfg.rnn} "
          f"{cfg.attention} attention, state {model.state_dim}, memory {model.memory_dim}")
    if world().is_main:
        save_run_files(args.checkpoint_dir, tokenizer, cfg)
    result = train_model(model, sources, targets, data, tokenizer, args, device)
    if not finish_training().is_main:
        return 0  # under torchrun rank 0 alone evaluates, exports and publishes

    model = model.cpu().eval()
    options = SearchOptions(args.beam_size, args.length_penalty, args.max_length_ratio,
                            args.max_length_offset)
    greedy_options = SearchOptions(1, 0.0, args.max_length_ratio, args.max_length_offset)
    with staged_version(args.repository, args.name) as writer:
        tokenizer.save(writer.path)
        export_translation_graphs(model, writer.path, args.exporter)
        parity = check_translation_parity(
            model, writer.path, tokenizer.encode_source(data.test.sources), PAD_ID, BOS_ID,
            EOS_ID, args.exporter, args.parity_tolerance, args.parity_sentences,
            args.max_length_ratio, args.max_length_offset)
        # the published figures come from the staged graphs, decoded as the server decodes
        greedy = decode_corpus(writer.path, tokenizer, data.test, greedy_options)
        beam = greedy if args.beam_size == 1 else decode_corpus(writer.path, tokenizer,
                                                                data.test, options)
        quantization = None
        if args.quantize == "int8":
            with tempfile.TemporaryDirectory() as float_folder:
                greedy, beam, quantization = quantize_translation(
                    writer.path, Path(float_folder), tokenizer, data.test, greedy, beam,
                    greedy_options, options)
        metrics = test_metrics(greedy, beam, data, tokenizer, result,
                               args.long_pairs_left_out["test"])
        manifest = build_manifest(args, data, len(sources), tokenizer, model, result, parity,
                                  metrics, time.perf_counter() - started)
        if quantization is not None:
            manifest["quantization"] = quantization
        version, _ = writer.commit(manifest)

    print_summary(Path(args.repository) / args.name / str(version), metrics, parity,
                  result, data, beam.texts)
    if quantization is not None:
        q = quantization
        print(f"int8: test BLEU {q['int8_score']:.2f} vs float {q['float_score']:.2f}; greedy "
              f"decode {q['speedup_batch1']}x the float speed one sentence at a time, "
              f"{q['speedup_batch']}x at {q['batch']} sentences")
    return 0


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
                     args: argparse.Namespace) -> tuple[ParallelSplits, dict[str, int]]:
    """Dev and test without the pairs whose cost has no bound, and how many were left out.

    The dev loss runs teacher-forced attention over every source x target piece, in batches:
    one 5,000-character line asked for 20 GB. Dev pairs follow the training limit; test pairs whose
    source exceeds --max-source-pieces are the ones the server refuses, so they cannot be
    scored through it either.
    """
    dev_keep = pairs_within(args.max_train_pieces, tokenizer.encode_source(data.dev.sources),
                            tokenizer.encode_target(data.dev.targets))
    require_pairs(dev_keep, "dev", data.dev.origin, "--max-train-pieces", args.max_train_pieces)
    test_keep = pairs_within(args.max_source_pieces, tokenizer.encode_source(data.test.sources))
    require_pairs(test_keep, "test", data.test.origin, "--max-source-pieces",
                  args.max_source_pieces)
    bounded = replace(data, dev=data.dev.take(dev_keep), test=data.test.take(test_keep))
    return bounded, {"dev": len(data.dev) - len(dev_keep), "test": len(data.test) - len(test_keep)}


def report_long_pairs(left_out: dict[str, int], args: argparse.Namespace) -> None:
    if any(left_out.values()):
        print(f"left out for length: {left_out['train']} train and {left_out['dev']} dev pairs "
              f"over --max-train-pieces {args.max_train_pieces}, {left_out['test']} test pairs "
              f"over --max-source-pieces {args.max_source_pieces} (pieces, EOS included)")


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


def save_run_files(folder: Path, tokenizer: TranslationTokenizer, cfg: Seq2SeqConfig) -> None:
    """The tokenizer and model config beside best.pt / last.pt, so a checkpoint can be loaded
    (Seq2Seq(Seq2SeqConfig(**json))) and decoded without this run's corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(folder)
    (folder / "model_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")


def train_model(model: Seq2Seq, sources: list[list[int]], targets: list[list[int]],
                data: ParallelSplits, tokenizer: TranslationTokenizer,
                args: argparse.Namespace, device: torch.device) -> TrainResult:
    dev_sources = tokenizer.encode_source(data.dev.sources)
    dev_targets = tokenizer.encode_target(data.dev.targets)
    dev_batches = [make_batch(dev_sources[i:i + EVAL_BATCH], dev_targets[i:i + EVAL_BATCH],
                              PAD_ID, BOS_ID, EOS_ID, device)
                   for i in range(0, len(dev_sources), EVAL_BATCH)]

    def step(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> StepOutput:
        src, lengths, tgt_in, tgt_out = batch
        logits, _ = model(src, lengths, tgt_in, args.teacher_forcing)
        real = tgt_out != PAD_ID
        tokens = int(real.sum())
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID,
                               label_smoothing=args.label_smoothing, reduction="sum") / tokens
        correct = int(((logits.argmax(dim=-1) == tgt_out) & real).sum())
        return StepOutput(loss, tokens, {"acc": correct})

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        """Dev per-token cross-entropy (no smoothing) under teacher forcing, and dev BLEU of
        a greedy PyTorch decode, which is what a translator cares about."""
        total, tokens, correct = 0.0, 0, 0
        for src, lengths, tgt_in, tgt_out in dev_batches:
            logits, _ = model(src, lengths, tgt_in)
            real = tgt_out != PAD_ID
            total += F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(),
                                     ignore_index=PAD_ID, reduction="sum").item()
            tokens += int(real.sum())
            correct += int(((logits.argmax(dim=-1) == tgt_out) & real).sum())
        hyps = greedy_torch(model, dev_sources, PAD_ID, BOS_ID, EOS_ID, args.max_length_ratio,
                            args.max_length_offset)
        bleu = corpus_scores([tokenizer.decode(h) for h in hyps], data.dev.targets)["bleu"]
        return {"loss": total / tokens, "acc": correct / tokens, "bleu": bleu}

    optimizer = build_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum)
    return fit(
        model, step,
        TranslationBatches(sources, targets, args.batch_size, args.seed, PAD_ID, BOS_ID,
                           EOS_ID, device),
        evaluate, optimizer,
        train_config(args),
        scheduler=build_scheduler(args.lr_schedule, optimizer, args.epochs),
        penalty=build_penalty(args),
    )


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


def build_manifest(args: argparse.Namespace, data: ParallelSplits, n_train: int,
                   tokenizer: TranslationTokenizer, model: Seq2Seq, result: TrainResult,
                   parity: Any, metrics: dict[str, Any],
                   wall_seconds: float) -> dict[str, Any]:
    config = jsonable_config(args)
    for split in ("train", "dev", "test"):  # lists of paths, which JSON cannot hold as such
        if config.get(split):
            config[split] = [str(p) for p in config[split]]
    training = {
        **config,
        "task": "translate",
        "model": {**model.cfg.to_dict(), "state_dim": model.state_dim,
                  "memory_dim": model.memory_dim,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "threads": torch.get_num_threads(),
        "data": {"source": data.source, "train": n_train, "dev": len(data.dev),
                 "test": len(data.test)},
        "distributed": result.world.manifest_entry(),
        "history": [asdict(r) for r in result.history],
    }
    return {
        "task": "translate",
        "graphs": {"encoder": ENCODER_FILE, "decoder_step": DECODER_FILE},
        "inputs": [{"name": "text", "dtype": "bytes", "shape": [-1]}],
        "outputs": [{"name": "translation", "dtype": "bytes", "shape": [-1]},
                    {"name": "attention", "dtype": "float32", "shape": [-1, -1, -1]}],
        "tokenizer": tokenizer.manifest_entry(),
        "decoding": {"default_beam_size": args.beam_size, "length_penalty": args.length_penalty,
                     "max_length_ratio": args.max_length_ratio,
                     "max_length_offset": args.max_length_offset},
        "limits": {"max_source_pieces": args.max_source_pieces},
        "metrics": metrics,
        "parity": parity.manifest_entry(),
        "training": training,
        "libraries": {**library_versions(), "sentencepiece": sentencepiece.__version__,
                      "sacrebleu": sacrebleu.__version__},
    }


def print_summary(where: Path, metrics: dict[str, Any], parity: Any, result: TrainResult,
                  data: ParallelSplits, translations: list[str]) -> None:
    g = metrics["greedy"]
    print(f"published {where}")
    print(f"test BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  "
          f"({metrics['n_test']} held-out pairs; {metrics['decoding']})")
    print(f"greedy:   BLEU {g['bleu']:.2f}  chrF {g['chrf']:.2f}")
    print(f"  {metrics['bleu_signature']}")
    print(f"  {metrics['chrf_signature']}")
    if "attention_alignment" in metrics:
        a = metrics["attention_alignment"]["greedy"]
        print(f"attention on the aligned source word: {a['accuracy']:.1%} of {a['words']} "
              f"generated words (greedy; {a['exact_sentences']}/{a['sentences']} sentences "
              f"exactly right)")
    print(f"best epoch {result.best_epoch}/{result.epochs_run} (dev loss "
          f"{result.best_val.get('loss', float('nan')):.4f}, dev greedy BLEU "
          f"{result.best_val.get('bleu', float('nan')):.2f}); trained {result.seconds:.0f}s; "
          f"parity max |diff| {parity.max_abs_diff:.2e} ({parity.exporter} exporter), greedy "
          f"tokens identical on {parity.greedy_sentences} sentences")
    for source, reference, hyp in zip(data.test.sources[:3], data.test.targets[:3],
                                      translations[:3], strict=False):
        print(f"  {source}\n    ref: {reference}\n    out: {hyp}")
