"""Multi-label sigmoid taggers: independent per-label probabilities, decided per label by the
thresholds tuned at training time (serving.postprocess.labels)."""

from __future__ import annotations

from serving.runners.image import ImageRunner


class TaggerRunner(ImageRunner):
    task = "tag"
