"""Attention image captioning (Show, Attend and Tell): a CNN feature grid is the memory an LSTM
decoder attends over, one word at a time; each word comes with where in the image it looked.

Data (dataset):
  multidigit  canvases of 1-4 real MNIST digits (the tagger's generator), captioned with the
              digits' words left to right ("three seven one"); digits from an MNIST IDX folder
              (--data-dir) or the bundled 5,000; the digit boxes score the attention.
  folder      photos: --data-dir holds them, --captions a CSV image,caption (several rows per
              image allowed; default DATA_DIR/captions.csv). Split by image with a fixed seed.

Presets: training/configs/caption-{multidigit,folder}.yaml. Training: teacher forcing,
cross-entropy per word, plus attention_reg times the doubly stochastic attention penalty; early
stopping on the validation cross-entropy. Export: encoder.onnx + decoder_step.onnx, checked
output by output (1e-5) and by greedy tokens against PyTorch. The held-out test split is then
captioned through the exported graphs in onnxruntime (beam search at the default beam and
greedy): corpus BLEU-1..4 against all references, exact match, and on canvases the attention
localisation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from serving.repository import CaptionDecoding, Grid, VocabularyTokenizer
from serving.repository.graph_io import (
    ATTENTION,
    DECODER_STEP,
    DECODER_STEP_FILE,
    ENCODER,
    ENCODER_FILE,
    PIXELS,
)
from training.batching import ShuffledBatches
from training.caption_metrics import corpus_bleu, exact_match
from training.caption_scoring import evaluate_exported, summary, torch_decode
from training.config_schema import CaptionConfig
from training.data.captions import (
    CaptionDataset,
    Vocabulary,
    canvas_split,
    load_caption_folder,
    tokenize,
)
from training.data.idx import DataError
from training.export.caption_graphs import (
    EncoderGraph,
    OnnxCaptioner,
    check_caption_parity,
    export_caption_graphs,
)
from training.loop import StepOutput, TrainResult
from training.models.captioner import Captioner, caption_loss, doubly_stochastic_penalty
from training.task import Publication, TaskBase, Training
from training.tasks.common import (
    canvases,
    channel_statistics,
    head,
    image_preprocessing,
    parameter_count,
)

VOCAB_FILE = "vocab.txt"
EVAL_BATCH = 256
VAL_DECODE = 500  # validation images decoded greedily after each epoch


class CaptionTask(TaskBase):
    schema = CaptionConfig
    variant = ("dataset", "multidigit")  # preset caption-<dataset>
    name = "caption"
    help = "attention image captioner (multi-digit canvases or captioned photos)"

    def prepare(self, config: CaptionConfig, device: torch.device) -> Training:
        self.config, self.data = config, load_data(config)
        data = self.data
        self.train = train = head(data.train, config.limit_train)
        self.vocab = vocab = Vocabulary.build((c for refs in train.references for c in refs),
                                              config.min_count)
        self.mean, self.std = channel_statistics(train.images)
        c, h, w = data.image_shape
        self.model = model = Captioner(c, (h, w), len(vocab), config.channels,
                                       config.feature_dim, config.embed_dim, config.hidden,
                                       config.attention_dim, config.dropout)
        print(f"captioner on {data.source}: {len(train)} train / {len(data.validation)} "
              f"validation / {len(data.test)} test images of {data.image_shape}, {len(vocab)} "
              f"words, grid {model.grid[0]}x{model.grid[1]}; device {device}, seed "
              f"{config.seed}")
        if data.blank_lines_skipped:
            print(f"skipped {data.blank_lines_skipped} blank line(s) of the captions CSV")
        self.graph = graph = EncoderGraph(model, self.mean, self.std).to(device)
        images = torch.from_numpy(train.images).to(device)
        index, captions = train.pairs()
        pairs = (torch.from_numpy(index).to(device),
                 torch.from_numpy(vocab.targets(captions, config.max_length)).to(device))
        validation = data.validation
        val_images = torch.from_numpy(validation.images).to(device)
        v_index, v_captions = validation.pairs()
        v_targets = torch.from_numpy(vocab.targets(v_captions, config.max_length)).to(device)
        v_index_t = torch.from_numpy(v_index).to(device)
        val_refs = [[tokenize(c) for c in refs] for refs in validation.references[:VAL_DECODE]]

        def step(graph: EncoderGraph, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
            idx, tokens = batch
            logits, attention = model(graph.normalise(images[idx].float()), tokens)
            ce, _ = caption_loss(logits, tokens[:, 1:], vocab.pad_id)
            loss = ce
            if config.attention_reg:
                valid = tokens[:, 1:] != vocab.pad_id
                # Xu et al. add the penalty to cross-entropy SUMMED over a caption's words; ce
                # is a per-word mean here, so the penalty is divided by the mean caption length
                # to keep their balance (undivided it outweighed ce ~5x, attention went uniform)
                words = valid.sum(dim=1).float().mean()
                loss = loss + config.attention_reg * doubly_stochastic_penalty(
                    attention, valid) / words
            return StepOutput(loss, len(idx), {"ce": ce.item() * len(idx)})

        def evaluate(graph: EncoderGraph) -> dict[str, float]:
            total, count = 0.0, 0
            for s in range(0, len(v_targets), EVAL_BATCH):
                tokens, idx = v_targets[s:s + EVAL_BATCH], v_index_t[s:s + EVAL_BATCH]
                logits, _ = model(graph.normalise(val_images[idx].float()), tokens)
                ce, n = caption_loss(logits, tokens[:, 1:], vocab.pad_id)
                total, count = total + ce.item() * n, count + n
            words = [vocab.decode(h.tokens) for h in torch_decode(
                graph, validation.images[:VAL_DECODE], vocab, config.max_length)]
            graph.to(device)
            return {"loss": total / count, "exact": exact_match(words, val_refs),
                    "bleu4": corpus_bleu(words, val_refs)["bleu4"]}

        return Training(graph, step, ShuffledBatches(pairs, config.batch_size, config.seed),
                        evaluate)

    def publish(self, folder: Path, result: TrainResult) -> Publication:
        config, data, vocab, model = self.config, self.data, self.vocab, self.model
        export_caption_graphs(self.graph, folder)
        vocab.write(folder / VOCAB_FILE)
        parity = check_caption_parity(self.graph, folder, data.test.images, vocab.bos_id,
                                      vocab.eos_id, config.max_length, len(vocab),
                                      tolerance=config.parity_tolerance)
        metrics = evaluate_exported(OnnxCaptioner(folder), data, self.train, vocab,
                                    config.max_length, config.beam_size, config.length_penalty,
                                    model.grid)
        c, h, w = data.image_shape
        rows, cols = model.grid
        sections = {
            "task": "caption",
            "graphs": {ENCODER: ENCODER_FILE, DECODER_STEP: DECODER_STEP_FILE},
            "inputs": [{"name": PIXELS, "dtype": "float32", "shape": [-1, c, h, w]}],
            "outputs": [{"name": "caption", "dtype": "bytes", "shape": [-1]},
                        {"name": ATTENTION, "dtype": "float32", "shape": [-1, -1, rows, cols]}],
            "preprocessing": image_preprocessing(
                data.image_shape, data.color, self.mean, self.std, resize="bilinear",
                background="black" if data.color == "grayscale" else None),
            "grid": Grid(rows=rows, cols=cols, cell_height=h // rows, cell_width=w // cols,
                         order="row-major", feature_dim=model.encoder.feature_dim,
                         state_dim=model.state_dim).to_dict(),
            "tokenizer": VocabularyTokenizer(
                vocab_file=VOCAB_FILE, pad_id=vocab.pad_id, bos_id=vocab.bos_id,
                eos_id=vocab.eos_id, unk_id=vocab.unk_id, join=" ",
                extra={"size": len(vocab), "tokenisation": "lower case, words [a-z0-9]+ "
                                                           "(inner apostrophe kept)"}).to_dict(),
            "decoding": CaptionDecoding(default_beam_size=config.beam_size,
                                        length_penalty=config.length_penalty,
                                        max_length=config.max_length).to_dict(),
            "metrics": metrics,
        }
        training = {"parameters": parameter_count(model),
                    "data": {"source": data.source, "train": len(self.train),
                             "train_captions": sum(len(r) for r in self.train.references),
                             "validation": len(data.validation), "test": len(data.test),
                             **({"blank_lines_skipped": data.blank_lines_skipped}
                                if data.blank_lines_skipped else {}), **data.details}}
        return Publication(sections, parity, summary(metrics, result, parity.max_abs_diff),
                           training)


def load_data(config: CaptionConfig) -> CaptionDataset:
    if config.dataset == "folder":
        if config.data_dir is None:
            raise DataError("--dataset folder needs --data-dir (the images) and a captions CSV")
        return load_caption_folder(config.data_dir, config.captions, config.image_size,
                                   config.val_fraction, config.test_fraction)
    digits, made = canvases(config, config.image_size)
    return CaptionDataset(canvas_split(made.train), canvas_split(made.validation),
                          canvas_split(made.test), "grayscale",
                          f"multi-digit canvases from {digits.source}", dict(made.settings))
