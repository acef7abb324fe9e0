"""The typed run configs: one pydantic model per task, shared by YAML files and the command line.

Every key a run reads is a field here, with its type, its range and its help text; the command
line's flags are made from these fields (training.run_config), so a YAML key and a flag can never
disagree. Values that differ between variants of a task (architecture, dataset) have no default
here: they come from the shipped preset of that variant (training/configs/<preset>.yaml).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from serving.repository.layout import is_valid_model_name
from training.data.multidigit import CANVAS_SEED, CANVAS_SIZE, MAX_DIGITS, MAX_OVERLAP, MIN_DIGITS
from training.data.tagging_folder import IMAGE_SIZE, TEST_FRACTION, VAL_FRACTION
from training.data.toy_grammar import DEFAULT_SIZES
from training.export.caption_graphs import PARITY_TOLERANCE as CAPTION_PARITY_TOLERANCE
from training.export.onnx_export import EXPORTERS
from training.export.parity import DEFAULT_TOLERANCE
from training.export.seq2seq_graphs import DEFAULT_EXPORTER
from training.export.seq2seq_graphs import PARITY_TOLERANCE as SEQ2SEQ_PARITY_TOLERANCE
from training.models import ACTIVATIONS, ARCHITECTURES
from training.models.attention import ATTENTION_TYPES
from training.models.seq2seq import RNN_TYPES
from training.models.taggers import TAGGER_ARCHITECTURES
from training.tokenizer import MODEL_TYPES


def _rule(test: Any, message: str) -> AfterValidator:
    # messages start with "must" so that argparse's "argument --lr: must ..." reads as before
    def check(value: Any) -> Any:
        if not test(value):
            raise ValueError(f"{message}, got {value}")
        return value
    return AfterValidator(check)


def _valid_name(text: str) -> str:
    # checked before training, so a bad name fails in a second rather than at publication
    if not is_valid_model_name(text):
        raise ValueError(f"invalid model name {text!r}: letters, digits, '_', '-', '.' "
                         "(128 at most)")
    return text


PositiveInt = Annotated[int, _rule(lambda v: v >= 1, "must be a positive integer")]
NonNegativeInt = Annotated[int, _rule(lambda v: v >= 0, "must be >= 0")]
# inf and nan are floats too: a learning rate of inf runs until the loss is nan
PositiveFloat = Annotated[float, _rule(lambda v: v > 0 and math.isfinite(v),
                                       "must be a positive finite number")]
NonNegativeFloat = Annotated[float, _rule(lambda v: v >= 0 and math.isfinite(v),
                                          "must be a finite number >= 0")]
UnitInterval = Annotated[float, _rule(lambda v: 0.0 <= v <= 1.0, "must lie in [0, 1]")]
Probability = Annotated[float, _rule(lambda v: 0.0 <= v < 1.0, "must lie in [0, 1)")]
# 0 would leave that split empty, 1 the others
SplitFraction = Annotated[float, _rule(lambda v: 0.0 < v < 1.0,
                                       "must lie in (0, 1): that split needs images")]
Sizes = Annotated[list[int], _rule(lambda v: all(s >= 1 for s in v),
                                   "must be positive layer sizes like 256,128")]
NonEmptySizes = Annotated[list[int], _rule(lambda v: v and all(s >= 1 for s in v),
                                           "must be positive sizes like 16,32,64")]
ModelName = Annotated[str, AfterValidator(_valid_name)]
SplitSizes = Annotated[tuple[int, int, int], _rule(lambda v: all(s >= 1 for s in v),
                                                   "must be TRAIN,DEV,TEST sizes >= 1")]


class RunConfig(BaseModel):
    """Keys of every task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # input and output
    repository: Path = Field(Path("exported"), description="model repository to publish into")
    name: ModelName = Field(description="model name in the repository")
    data_dir: Path | None = Field(None, description="dataset folder (default: the bundled data)")
    checkpoint_dir: Path | None = Field(
        None, description="where last.pt, best.pt and config.yaml go (default: runs/<name>)")
    quiet: bool = Field(False, description="no progress bar and no per-epoch lines")
    resume: bool = Field(False, description="continue from last.pt in the checkpoint folder "
                                            "(model, optimiser, schedule, early stopping, RNG)")
    limit_train: PositiveInt | None = Field(
        None, description="train on the first N training examples only (quick runs)")
    # optimisation
    epochs: PositiveInt = Field(description="maximum number of epochs")
    batch_size: PositiveInt
    optimizer: Literal["sgd", "adam"]
    lr: PositiveFloat = Field(description="initial learning rate")
    momentum: NonNegativeFloat = Field(0.9, description="SGD momentum")
    lr_schedule: Literal["none", "cosine", "step", "plateau"] = Field(
        "cosine", description="per-epoch schedule: cosine annealing to ~0, step (x0.1 every "
                              "third of the epochs), plateau (x0.1 after 2 flat epochs), none")
    patience: NonNegativeInt = Field(
        5, description="stop after this many epochs without a lower validation loss; 0 "
                       "disables early stopping")
    grad_clip: PositiveFloat | None = Field(None, description="clip the global gradient norm")
    seed: int = Field(0, description="seeds initialisation, dropout and batch order")
    max_minutes: PositiveFloat | None = Field(
        None, description="training time budget; no epoch starts that would, at the last "
                          "epoch's pace, end past it")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:1 ...")
    # regularisation: penalties cover weight matrices and kernels, never biases
    l1: NonNegativeFloat = Field(0.0, description="L1 strength: l1*sum|w|")
    l2: NonNegativeFloat = Field(0.0, description="L2 strength: l2*sum w^2 (no 1/2)")
    elastic_net: NonNegativeFloat | None = Field(
        None, description="elastic-net strength LAMBDA; adds LAMBDA*R to l1, LAMBDA*(1-R) to l2")
    l1_ratio: UnitInterval = Field(0.5, description="share R of elastic_net that is L1")
    dropout: Probability = Field(description="dropout probability")
    parity_tolerance: PositiveFloat = Field(
        DEFAULT_TOLERANCE, description="largest |onnxruntime - PyTorch| allowed")


class UnseenClasses(BaseModel):
    allow_unseen_classes: bool = Field(
        False, description="keep classes no training example has (they are reported); by "
                           "default such data is refused")


class MnistConfig(RunConfig, UnseenClasses):
    arch: Literal[ARCHITECTURES] = Field("mlp", description="softmax regression, MLP or CNN")
    hidden: Sizes = Field(description="hidden layer sizes (MLP), fully connected sizes after "
                                      "the convolutions (CNN)")
    activation: Literal[tuple(ACTIVATIONS)] = Field("relu", description="hidden activation")
    calibrate: bool = Field(True, description="temperature scaling on the validation split, "
                                              "kept only where it helps")
    quantize: Literal["none", "int8"] = Field(
        "none", description="publish the INT8 dynamically quantised graph")


class CanvasConfig(BaseModel):
    """Multi-digit canvases (training.data.multidigit)."""

    min_digits: PositiveInt = MIN_DIGITS
    max_digits: PositiveInt = MAX_DIGITS
    max_overlap: UnitInterval = Field(
        MAX_OVERLAP, description="largest share of the smaller digit box two digits may share")
    train_canvases: PositiveInt = 20000
    val_canvases: PositiveInt = 2000
    test_canvases: PositiveInt = 4000
    canvas_seed: NonNegativeInt = Field(
        CANVAS_SEED, description="seed of the canvases, separate from seed so the held-out "
                                 "canvases stay the same across training seeds")


class FolderSplitConfig(BaseModel):
    val_fraction: SplitFraction = VAL_FRACTION
    test_fraction: SplitFraction = TEST_FRACTION


class TaggerConfig(RunConfig, UnseenClasses, CanvasConfig, FolderSplitConfig):
    dataset: Literal["multidigit", "folder"] = "multidigit"
    arch: Literal[TAGGER_ARCHITECTURES] = Field(
        "cnn", description="CNN with global pooling, or MLP on the pixels")
    channels: Sizes = Field(description="CNN: output channels of the conv stages")
    hidden: Sizes = Field(description="fully connected hidden sizes")
    activation: Literal[tuple(ACTIVATIONS)] = "relu"
    pos_weight: Literal["none", "auto"] = Field(
        "none", description="auto: weight each label's positives by negatives/positives")
    max_pos_weight: PositiveFloat = Field(10.0, description="clip of the auto positive weights")
    hflip: bool = Field(description="augment: mirror a random half of each batch")
    canvas_size: PositiveInt = Field(CANVAS_SIZE, description="canvas side in pixels")
    tags_csv: Path | None = Field(None, description="the image,tags CSV (default: "
                                                    "DATA_DIR/tags.csv)")
    image_size: PositiveInt = Field(IMAGE_SIZE, description="folder: square size of the images")


class CaptionConfig(RunConfig, CanvasConfig, FolderSplitConfig):
    parity_tolerance: PositiveFloat = CAPTION_PARITY_TOLERANCE
    val_fraction: SplitFraction = 0.1
    val_canvases: PositiveInt = 1000
    test_canvases: PositiveInt = 2000
    dataset: Literal["multidigit", "folder"] = "multidigit"
    channels: NonEmptySizes = Field(description="conv stages of the encoder, each halving the "
                                                "image")
    feature_dim: PositiveInt = Field(description="channels of a grid cell")
    embed_dim: PositiveInt = 32
    hidden: PositiveInt = Field(description="LSTM hidden size")
    attention_dim: PositiveInt = 64
    attention_reg: NonNegativeFloat = Field(
        description="weight of the doubly stochastic attention penalty")
    max_length: PositiveInt = Field(description="words per caption (training cut, search stop)")
    beam_size: PositiveInt = Field(3, description="beam of the test figures and the served "
                                                  "default")
    length_penalty: NonNegativeFloat = Field(0.0, description="GNMT alpha for beam search")
    captions: Path | None = Field(None, description="folder: the image,caption CSV (default: "
                                                    "DATA_DIR/captions.csv)")
    image_size: PositiveInt = Field(description="folder: square photo size; multidigit: canvas "
                                                "side")
    min_count: PositiveInt = Field(description="rarer training words become <unk>")


class TranslateConfig(RunConfig):
    parity_tolerance: PositiveFloat = SEQ2SEQ_PARITY_TOLERANCE
    train: list[Path] | None = Field(None, description="the train split: FILE.tsv or SOURCE "
                                                       "TARGET")
    dev: list[Path] | None = Field(None, description="the dev split")
    test: list[Path] | None = Field(None, description="the test split")
    swap: bool = Field(False, description="translate the second column / file into the first")
    toy_sizes: SplitSizes = Field(DEFAULT_SIZES, description="toy grammar sentences per split")
    max_train_pieces: PositiveInt | None = Field(
        None, description="leave out training and dev pairs longer (default: max_source_pieces)")
    vocab_size: PositiveInt = Field(description="SentencePiece pieces per language")
    sp_model_type: Literal[MODEL_TYPES] = "unigram"
    rnn: Literal[RNN_TYPES] = "gru"
    attention: Literal[ATTENTION_TYPES] = "additive"
    embedding_dim: PositiveInt
    hidden: PositiveInt = Field(description="decoder state size")
    encoder_hidden: PositiveInt = Field(description="encoder size per direction")
    layers: PositiveInt = 1
    attention_dim: PositiveInt
    input_feeding: bool = Field(False, description="feed the previous attentional vector "
                                                   "(Luong); slower")
    tie_embeddings: bool = Field(False, description="output layer reuses the target embedding")
    teacher_forcing: UnitInterval = Field(1.0, description="share of steps fed the reference")
    label_smoothing: Probability
    threads: PositiveInt = Field(1, description="CPU threads for PyTorch and onnxruntime")
    beam_size: PositiveInt = Field(4, description="the served default and the reported BLEU's")
    length_penalty: NonNegativeFloat = 0.6
    max_length_ratio: PositiveFloat = 2.0
    max_length_offset: NonNegativeInt = 10
    max_source_pieces: PositiveInt = Field(100, description="longest source the server accepts")
    exporter: Literal[EXPORTERS] = DEFAULT_EXPORTER
    quantize: Literal["none", "int8"] = "none"
    parity_sentences: PositiveInt = Field(
        200, description="held-out sentences greedy-decoded through PyTorch and onnxruntime")

    @property
    def data_kind(self) -> str:
        given = self.data_dir is not None or any((self.train, self.dev, self.test))
        return "files" if given else "toy"

    @property
    def train_piece_limit(self) -> int:
        return self.max_train_pieces or self.max_source_pieces
