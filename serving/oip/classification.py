"""The classification extension: top-k of an output as "value:index:label" BYTES, as Triton does."""

from __future__ import annotations

import numpy as np

from serving.errors import InvalidInput


def classification_strings(scores: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """[batch, classes] -> BYTES [batch, k], most probable first."""
    if scores.ndim != 2:
        raise InvalidInput(f"classification needs a [batch, classes] output, got shape "
                           f"{list(scores.shape)}")
    if k < 1:
        raise InvalidInput("the classification parameter must be a positive count")
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for row, indices in enumerate(order):
        for col, index in enumerate(indices):
            text = f"{scores[row, index]:f}:{index}"
            if labels:
                text += f":{labels[index]}"
            out[row, col] = text.encode("utf-8")
    return out
