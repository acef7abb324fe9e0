"""The model repository format shared by the trainer (writer) and the server (reader).

exported/<model>/<version>/{model.onnx | encoder.onnx + decoder_step.onnx, manifest.json, ...}
exported/<model>/config.pbtxt   (Triton-compatible, single-graph models)
"""

from serving.repository.layout import MANIFEST_FILE, model_names, version_numbers
from serving.repository.manifest import Manifest, ManifestError, TensorSpec
from serving.repository.publish import VersionWriter
from serving.repository.sections import (
    Calibration,
    CaptionDecoding,
    Decoding,
    Grid,
    ImagePreprocessing,
    SentencePieceTokenizer,
    TranslationDecoding,
    TranslationLimits,
    VocabularyTokenizer,
)
from serving.repository.verify import verify_version

__all__ = [
    "MANIFEST_FILE",
    "Calibration",
    "CaptionDecoding",
    "Decoding",
    "Grid",
    "ImagePreprocessing",
    "Manifest",
    "ManifestError",
    "SentencePieceTokenizer",
    "TensorSpec",
    "TranslationDecoding",
    "TranslationLimits",
    "VersionWriter",
    "VocabularyTokenizer",
    "model_names",
    "verify_version",
    "version_numbers",
]
