"""Attention encoder-decoder translation (Bahdanau et al. 2014; Luong et al. 2015).

Data: --train/--dev/--test, each a source<TAB>target TSV file (--swap for target<TAB>source)
or two line-aligned files (SOURCE TARGET); or --data-dir with train.tsv, dev.tsv and test.tsv.
With neither, the bundled Spanish->English toy grammar (training/data/toy_grammar.py), whose
known word alignments let the run also score where the attention looks.

Presets: training/configs/translate-{toy,files}.yaml (files: chosen on the dev split of
tatoeba-spa-eng). SentencePiece models (one per language) are trained on the training split
only. The model is a bidirectional GRU/LSTM encoder, a bridge to the decoder state, and a
GRU/LSTM decoder with dot, general or additive attention; trained with teacher forcing
(optionally scheduled sampling), label smoothing, dropout and gradient clipping. The best epoch
by dev loss is exported as encoder.onnx + decoder_step.onnx, gated on parity with PyTorch
(per-step outputs and whole greedy decodes), then the held-out test split is translated through
the exported graphs with the server's own search code and scored with sacrebleu.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sacrebleu
import sentencepiece
import torch
import torch.nn.functional as F

from serving.repository import TranslationDecoding, TranslationLimits
from serving.repository.graph_io import (
    ATTENTION,
    DECODER_STEP,
    DECODER_STEP_FILE,
    ENCODER,
    ENCODER_FILE,
)
from training.config_schema import TranslateConfig
from training.data.parallel import ParallelSplits, load_splits
from training.data.toy_grammar import toy_splits
from training.data.translation_batches import TranslationBatches, make_batch
from training.distributed import world
from training.evaluate_translation import decode_corpus
from training.export.seq2seq_graphs import (
    SearchOptions,
    check_translation_parity,
    export_translation_graphs,
    greedy_torch,
)
from training.loop import StepOutput, TrainResult
from training.models.seq2seq import Seq2Seq, Seq2SeqConfig
from training.task import Publication, Training
from training.tasks.common import head, parameter_count
from training.tokenizer import BOS_ID, EOS_ID, PAD_ID, TranslationTokenizer
from training.translation_metrics import corpus_scores
from training.translation_scoring import (
    bounded_held_out,
    check_vocab_size,
    pairs_within,
    quantize_translation,
    report_long_pairs,
    require_pairs,
    summary,
    test_metrics,
)

EVAL_BATCH = 64


class TranslateTask:
    name = "translate"
    help = ("attention encoder-decoder translation (TSV / aligned files or the "
                           "bundled toy grammar)")
    schema = TranslateConfig

    @staticmethod
    def preset(given: Mapping[str, Any]) -> str:
        files = any(given.get(k) for k in ("data_dir", "train", "dev", "test"))
        return "translate-files" if files else "translate-toy"

    def prepare(self, config: TranslateConfig, device: torch.device) -> Training:
        self.config = config
        # the RNN steps are small products: more threads on a shared machine mostly spin
        torch.set_num_threads(config.threads)
        data = toy_splits(config.toy_sizes) if config.data_kind == "toy" else load_splits(
            config.train, config.dev, config.test, config.data_dir, config.swap)
        if data.blank_lines_skipped:
            print("skipped blank lines (both sides empty): " + ", ".join(
                f"{n} in {split}" for split, n in data.blank_lines_by_split().items()))
        train = head(data.train, config.limit_train)
        check_vocab_size(config.vocab_size, train)
        self.tokenizer = tokenizer = TranslationTokenizer.train(
            train.sources, train.targets, config.vocab_size, config.sp_model_type)
        sources = tokenizer.encode_source(train.sources)
        targets = tokenizer.encode_target(train.targets)
        keep = pairs_within(config.train_piece_limit, sources, targets)
        require_pairs(keep, "training", train.origin, "--max-train-pieces",
                      config.train_piece_limit)
        sources, targets = [sources[i] for i in keep], [targets[i] for i in keep]
        data, left_out = bounded_held_out(data, tokenizer, config)
        self.data = data
        self.left_out = {"train": len(train) - len(keep), **left_out}
        self.n_train = len(sources)
        report_long_pairs(self.left_out, config)
        print(f"translate: {len(sources)} train / {len(data.dev)} dev / {len(data.test)} test "
              f"pairs from {data.source}; SentencePiece {config.sp_model_type} "
              f"{tokenizer.source_vocab_size} source / {tokenizer.target_vocab_size} target "
              f"pieces; device {device}, seed {config.seed}")
        cfg = Seq2SeqConfig(
            source_vocab=tokenizer.source_vocab_size, target_vocab=tokenizer.target_vocab_size,
            embedding_dim=config.embedding_dim, hidden=config.hidden,
            encoder_hidden=config.encoder_hidden, layers=config.layers, rnn=config.rnn,
            attention=config.attention, attention_dim=config.attention_dim,
            dropout=config.dropout, input_feeding=config.input_feeding,
            tie_embeddings=config.tie_embeddings, pad_id=PAD_ID)
        self.model = model = Seq2Seq(cfg).to(device)
        print(f"model: {parameter_count(model):,} parameters, {cfg.rnn} {cfg.attention} "
              f"attention, state {model.state_dim}, memory {model.memory_dim}")
        if world().is_main:
            # tokenizer and model config beside the checkpoints, so that a checkpoint can be
            # loaded (Seq2Seq(Seq2SeqConfig(**json))) and decoded without this run's corpus
            config.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            tokenizer.save(config.checkpoint_dir)
            (config.checkpoint_dir / "model_config.json").write_text(
                json.dumps(cfg.to_dict(), indent=2) + "\n")
        return self._training(sources, targets, device)

    def _training(self, sources: list[list[int]], targets: list[list[int]],
                  device: torch.device) -> Training:
        config, tokenizer, data = self.config, self.tokenizer, self.data
        dev_sources = tokenizer.encode_source(data.dev.sources)
        dev_targets = tokenizer.encode_target(data.dev.targets)
        dev_batches = [make_batch(dev_sources[i:i + EVAL_BATCH], dev_targets[i:i + EVAL_BATCH],
                                  PAD_ID, BOS_ID, EOS_ID, device)
                       for i in range(0, len(dev_sources), EVAL_BATCH)]

        def step(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> StepOutput:
            src, lengths, tgt_in, tgt_out = batch
            logits, _ = model(src, lengths, tgt_in, config.teacher_forcing)
            real = tgt_out != PAD_ID
            tokens = int(real.sum())
            loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID,
                                   label_smoothing=config.label_smoothing,
                                   reduction="sum") / tokens
            correct = int(((logits.argmax(dim=-1) == tgt_out) & real).sum())
            return StepOutput(loss, tokens, {"acc": correct})

        def evaluate(model: torch.nn.Module) -> dict[str, float]:
            """Dev per-token cross-entropy (no smoothing) under teacher forcing, and dev BLEU
            of a greedy PyTorch decode, which is what a translator cares about."""
            total, tokens, correct = 0.0, 0, 0
            for src, lengths, tgt_in, tgt_out in dev_batches:
                logits, _ = model(src, lengths, tgt_in)
                real = tgt_out != PAD_ID
                total += F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(),
                                         ignore_index=PAD_ID, reduction="sum").item()
                tokens += int(real.sum())
                correct += int(((logits.argmax(dim=-1) == tgt_out) & real).sum())
            hyps = greedy_torch(model, dev_sources, PAD_ID, BOS_ID, EOS_ID,
                                config.max_length_ratio, config.max_length_offset)
            bleu = corpus_scores([tokenizer.decode(h) for h in hyps], data.dev.targets)["bleu"]
            return {"loss": total / tokens, "acc": correct / tokens, "bleu": bleu}

        batches = TranslationBatches(sources, targets, config.batch_size, config.seed, PAD_ID,
                                     BOS_ID, EOS_ID, device)
        return Training(self.model, step, batches, evaluate)

    def publish(self, folder: Path, result: TrainResult) -> Publication:
        config, tokenizer, data, model = self.config, self.tokenizer, self.data, self.model
        options = SearchOptions(config.beam_size, config.length_penalty,
                                config.max_length_ratio, config.max_length_offset)
        greedy_options = SearchOptions(1, 0.0, config.max_length_ratio,
                                       config.max_length_offset)
        tokenizer.save(folder)
        export_translation_graphs(model, folder, config.exporter)
        parity = check_translation_parity(
            model, folder, tokenizer.encode_source(data.test.sources), PAD_ID, BOS_ID, EOS_ID,
            config.exporter, config.parity_tolerance, config.parity_sentences,
            config.max_length_ratio, config.max_length_offset)
        # the published figures come from the staged graphs, decoded as the server decodes
        greedy = decode_corpus(folder, tokenizer, data.test, greedy_options)
        beam = greedy if config.beam_size == 1 else decode_corpus(folder, tokenizer, data.test,
                                                                  options)
        quantization = None
        if config.quantize == "int8":
            with tempfile.TemporaryDirectory() as float_folder:
                greedy, beam, quantization = quantize_translation(
                    folder, Path(float_folder), tokenizer, data.test, greedy, beam,
                    greedy_options, options)
        metrics = test_metrics(greedy, beam, data, tokenizer, result, self.left_out["test"])
        sections = manifest_sections(config, tokenizer, metrics)
        if quantization is not None:
            sections["quantization"] = quantization
        training = {
            "data_kind": config.data_kind, "max_train_pieces_used": config.train_piece_limit,
            "long_pairs_left_out": self.left_out, "dropped_long_pairs": self.left_out["train"],
            "model": {**model.cfg.to_dict(), "state_dim": model.state_dim,
                      "memory_dim": model.memory_dim, "parameters": parameter_count(model)},
            "threads": torch.get_num_threads(),
            "data": {"source": data.source, "train": self.n_train, "dev": len(data.dev),
                     "test": len(data.test),
                     **blank_lines(data)},
        }
        return Publication(sections, parity, summary(metrics, parity, result, data, beam.texts,
                                                     quantization), training,
                           {"sentencepiece": sentencepiece.__version__,
                            "sacrebleu": sacrebleu.__version__})


def blank_lines(data: ParallelSplits) -> dict[str, Any]:
    return {"blank_lines_skipped": data.blank_lines_by_split()} if data.blank_lines_skipped \
        else {}


def manifest_sections(config: TranslateConfig, tokenizer: TranslationTokenizer,
                      metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": "translate",
        "graphs": {ENCODER: ENCODER_FILE, DECODER_STEP: DECODER_STEP_FILE},
        "inputs": [{"name": "text", "dtype": "bytes", "shape": [-1]}],
        "outputs": [{"name": "translation", "dtype": "bytes", "shape": [-1]},
                    {"name": ATTENTION, "dtype": "float32", "shape": [-1, -1, -1]}],
        "tokenizer": tokenizer.manifest_entry(),
        "decoding": TranslationDecoding(default_beam_size=config.beam_size,
                                        length_penalty=config.length_penalty,
                                        max_length_ratio=config.max_length_ratio,
                                        max_length_offset=config.max_length_offset).to_dict(),
        "limits": TranslationLimits(max_source_pieces=config.max_source_pieces).to_dict(),
        "metrics": metrics,
    }
