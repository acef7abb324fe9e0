"""What every images-in model shares: the pixel contract, its checks and image decoding.

The contract every front end declares: pixels are UINT8 grey levels (or RGB values) 0..255,
[N, C, H, W], or encoded images (PNG, JPEG, ...) as BYTES. A float tensor is refused rather
than guessed at: a client that scaled its pixels to 0..1 (the torchvision convention) would
otherwise get confident wrong answers from a graph trained on raw 0..255 values. The graph
itself takes float32 0..255; the cast is exact.
"""

from __future__ import annotations

import numpy as np

from serving.errors import InvalidInput
from serving.preprocess.images import decode_images, header_pixels
from serving.preprocess.tensors import PIXEL_RANGE, grey_levels, image_batch
from serving.repository import ImagePreprocessing, Manifest, TensorSpec
from serving.repository.graph_io import PROBABILITIES
from serving.runners.base import Parameters, Runner, Tensors

IMAGE_INPUT = "image"  # encoded images, one BYTES element per batch row
WARMUP_ROWS = (1, 3)  # two batch sizes: a graph with a fixed batch axis fails at once
INLINE_IMAGES, INLINE_PIXELS = 8, 256 * 1024


class ImageInput:
    """Pixel tensors or encoded images -> the float32 [N, C, H, W] batch the graph takes."""

    manifest: Manifest

    @property
    def input_name(self) -> str:
        return self.manifest.inputs[0].name

    @property
    def preprocessing(self) -> ImagePreprocessing:
        assert self.manifest.preprocessing is not None  # from_dict: image tasks have one
        return self.manifest.preprocessing

    @property
    def chw(self) -> tuple[int, int, int]:
        return self.preprocessing.chw

    @property
    def pixel_spec(self) -> TensorSpec:
        return TensorSpec(self.input_name, "uint8", [-1, *self.chw])

    def checks_inline(self, inputs: Tensors) -> bool:
        """Pixel tensors and a few small images are checked on the event loop: handing a
        28x28 PNG to a worker costs more than decoding it, and would queue it behind large
        decodes. Anything larger goes to a worker."""
        if IMAGE_INPUT not in inputs:
            return True
        encoded = inputs[IMAGE_INPUT].reshape(-1)
        if len(encoded) > INLINE_IMAGES:
            return False
        try:
            return header_pixels([bytes(x) for x in encoded]) <= INLINE_PIXELS
        except InvalidInput:
            return True  # refused at once by check()

    def pixels_from_inputs(self, inputs: Tensors) -> np.ndarray:
        """The call's pixel tensor or encoded images, checked, as the graph's float32 batch."""
        given = [name for name in (self.input_name, IMAGE_INPUT) if name in inputs]
        if len(given) != 1:
            raise InvalidInput(f"send exactly one of {self.input_name!r} ({PIXEL_RANGE}) or "
                               f"{IMAGE_INPUT!r} (encoded images)")
        if given[0] == IMAGE_INPUT:
            encoded = [bytes(x) for x in inputs[IMAGE_INPUT].reshape(-1)]
            if not encoded:
                raise InvalidInput("no image in the request")
            return decode_images(encoded, dict(self.preprocessing))
        what = f"input {self.input_name!r}"
        return image_batch(grey_levels(inputs[self.input_name], what), self.chw, what)


class ImageRunner(ImageInput, Runner):
    """Images in, one score per label out (classifiers and taggers)."""

    def warmup(self) -> None:
        for rows in WARMUP_ROWS:
            self.probabilities(np.zeros((rows, *self.chw), dtype=np.float32))

    @property
    def input_specs(self) -> list[TensorSpec]:
        return [self.pixel_spec]

    def check(self, inputs: Tensors, parameters: Parameters) -> Tensors:
        return {self.input_name: self.pixels_from_inputs(inputs)}

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return self.run_graph({self.input_name: pixels}, [PROBABILITIES])[PROBABILITIES]
