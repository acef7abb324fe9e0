"""Temperature scaling (Guo et al. 2017): one scalar T > 0 with softmax(z / T).

Fitted on validation logits, never on test. It leaves the argmax (so accuracy) unchanged and only
makes the probabilities honest: a network trained to low cross-entropy is usually overconfident.

Fitting minimises NLL, which a few confidently wrong examples dominate: the T that softens them
can leave every other probability underconfident, and ECE worse than with no scaling (measured on
the softmax MNIST model: test ECE 0.88% -> 1.35%). So choose_temperature keeps T only when it
lowers both validation NLL and validation ECE, and says which it served and why.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from serving.repository import Calibration
from training.metrics import ECE_BINS, cross_entropy_from_logits, ece, softmax


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


def choose_temperature(val_logits: np.ndarray | torch.Tensor, val_labels: np.ndarray | torch.Tensor,
                       n_bins: int = ECE_BINS) -> Calibration:
    """The fitted temperature if it lowers both validation NLL and ECE, else T = 1; the
    manifest's `calibration` section (Calibration.to_dict())."""
    z = torch.as_tensor(val_logits, dtype=torch.float64).detach().cpu().numpy()
    y = torch.as_tensor(val_labels, dtype=torch.int64).cpu().numpy()
    fitted = fit_temperature(z, y)
    nll = cross_entropy_from_logits(z, y), cross_entropy_from_logits(z / fitted, y)
    calibration = ece(softmax(z), y, n_bins), ece(softmax(z / fitted), y, n_bins)
    kept = nll[1] < nll[0] and calibration[1] < calibration[0]
    if kept:
        reason = (f"T = {fitted:.3f} lowers validation NLL {nll[0]:.4f} -> {nll[1]:.4f} and "
                  f"ECE {calibration[0]:.2%} -> {calibration[1]:.2%}")
    else:
        worse = [name for name, (before, after) in (("NLL", nll), ("ECE", calibration))
                 if after >= before]
        reason = (f"not kept: T = {fitted:.3f} does not lower validation {' or '.join(worse)} "
                  f"(NLL {nll[0]:.4f} -> {nll[1]:.4f}, ECE {calibration[0]:.2%} -> "
                  f"{calibration[1]:.2%}); serving T = 1")
    return Calibration(temperature=fitted if kept else 1.0, kept=kept, fitted_temperature=fitted,
                       validation_nll_before=nll[0], validation_nll_after=nll[1],
                       validation_ece_before=calibration[0],
                       validation_ece_after=calibration[1], ece_bins=n_bins, reason=reason)
