"""Softmax classifiers: pixels in, a probability distribution and the top-k labels out."""

from __future__ import annotations

from serving.runners.image import ImageRunner


class ClassifierRunner(ImageRunner):
    task = "classify"
