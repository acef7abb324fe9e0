"""Temperature scaling (Guo et al. 2017): one scalar T > 0 with softmax(z / T).

Fitted on validation logits, never on test. It leaves the argmax (so accuracy) unchanged and only
makes the probabilities honest: a network trained to low cross-entropy is usually overconfident.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_temperature(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                    max_iter: int = 200) -> float:
    """T minimising the NLL of softmax(logits / T); optimised over log T so T stays positive."""
    z = torch.as_tensor(logits, dtype=torch.float64).detach().cpu()
    t = torch.as_tensor(labels, dtype=torch.int64).cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    with torch.no_grad():
        before = F.cross_entropy(z, t).item()
        after = F.cross_entropy(z / temperature, t).item()
    # LBFGS can wander on degenerate inputs (e.g. all predictions correct with huge margins);
    # never ship a temperature that makes validation NLL worse than no scaling at all
    if not np.isfinite(temperature) or after > before:
        return 1.0
    return temperature
