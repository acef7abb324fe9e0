"""The graphs of a version: their files, their roles in manifest.graphs, their tensors' names.

Written once here because two programs must agree on them: the trainer exports graphs with
these names and the server feeds and reads them by these names. A name changed on one side
only would pass every test of that side and fail every call.

    model.onnx         pixels float32 [B, C, H, W] -> probabilities [B, L], logits [B, L]
    encoder.onnx       src_ids int64 [B, S], src_lengths int64 [B]    (translation)
                       pixels float32 [B, C, H, W]                     (captioning)
                       -> memory float32 [B, S, F], state float32 [B, D]
    decoder_step.onnx  prev_ids int64 [B], state [B, D], memory [B, S, F], src_mask bool [B, S]
                       -> log_probs [B, V], new_state [B, D], attention [B, S]
"""

from __future__ import annotations

# roles: the keys of manifest.graphs
MODEL, ENCODER, DECODER_STEP = "model", "encoder", "decoder_step"
SEQUENCE_ROLES = (ENCODER, DECODER_STEP)

MODEL_FILE, ENCODER_FILE, DECODER_STEP_FILE = "model.onnx", "encoder.onnx", "decoder_step.onnx"

# single-graph image models (classifiers, taggers) and the captioner's encoder
PIXELS = "pixels"
PROBABILITIES, LOGITS = "probabilities", "logits"
IMAGE_OUTPUTS = (PROBABILITIES, LOGITS)

# the translator's encoder
SRC_IDS, SRC_LENGTHS = "src_ids", "src_lengths"
TEXT_ENCODER_INPUTS = (SRC_IDS, SRC_LENGTHS)
IMAGE_ENCODER_INPUTS = (PIXELS,)

MEMORY, STATE = "memory", "state"
ENCODER_OUTPUTS = (MEMORY, STATE)
# attention keys some encoders serve beside their memory (older versions: computed in the step)
MEMORY_KEYS = "memory_keys"

PREV_IDS, SRC_MASK = "prev_ids", "src_mask"
STEP_INPUTS = (PREV_IDS, STATE, MEMORY, SRC_MASK)
LOG_PROBS, NEW_STATE, ATTENTION = "log_probs", "new_state", "attention"
STEP_OUTPUTS = (LOG_PROBS, NEW_STATE, ATTENTION)
