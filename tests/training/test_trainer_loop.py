from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from training.batching import ShuffledBatches
from training.loop import StepOutput, TrainConfig, TrainingDiverged, fit
from training.losses import cross_entropy
from training.models import build_classifier
from training.regularizers import WeightPenalty
from training.seeding import seed_everything


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > 0).long() + (x[:, 0, 4:].mean(dim=(1, 2)) > 0).long()
    return x, y


def _step(model, batch):
    x, y = batch
    logits = model(x)
    return StepOutput(cross_entropy(logits, y), len(y),
                      {"acc": (logits.argmax(1) == y).sum().item()})


def _train(seed: int, tmp: Path | None = None, epochs: int = 3, patience: int | None = None,
           lr: float = 0.01, penalty=None):
    seed_everything(seed)
    x, y = _data()
    xv, yv = x[:64], y[:64]
    model = build_classifier("mlp", (1, 8, 8), 3, hidden=[16], dropout=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def evaluate(m):
        logits = m(xv)
        return {"loss": cross_entropy(logits, yv).item(),
                "acc": (logits.argmax(1) == yv).float().mean().item()}

    result = fit(model, _step, ShuffledBatches((x, y), 32, seed), evaluate, opt,
                 TrainConfig(epochs=epochs, patience=patience, checkpoint_dir=tmp, log=None),
                 scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs),
                 penalty=penalty)
    return model, result


def test_same_seed_same_weights_different_seed_different_weights() -> None:
    a, _ = _train(seed=7)
    b, _ = _train(seed=7)
    c, _ = _train(seed=8)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.state_dict()["net.1.weight"], c.state_dict()["net.1.weight"])


def test_learns_and_writes_checkpoints(tmp_path: Path) -> None:
    model, result = _train(seed=0, tmp=tmp_path, epochs=4, lr=0.05)
    assert result.history[-1].train["loss"] < result.history[0].train["loss"]
    assert result.best_val["acc"] > 0.5
    assert {p.name for p in tmp_path.iterdir()} == {"best.pt", "last.pt"}
    best = torch.load(tmp_path / "best.pt")
    assert best["epoch"] == result.best_epoch
    # the model ends with the best weights, not the last ones
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["model"][k])
    last = torch.load(tmp_path / "last.pt")
    assert last["epoch"] == result.epochs_run and "optimizer" in last


def test_early_stopping_restores_best_epoch() -> None:
    # a learning rate this high makes validation loss rise after the first epochs
    model, result = _train(seed=0, epochs=30, patience=2, lr=3.0)
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 2
    assert result.best_val["loss"] == min(r.val["loss"] for r in result.history)


def test_penalty_is_reported_and_shrinks_weights() -> None:
    plain, _ = _train(seed=0, epochs=3)
    shrunk, result = _train(seed=0, epochs=3, penalty=WeightPenalty(l2=0.05))
    assert "penalty" in result.history[0].train
    norm = lambda m: sum(p.pow(2).sum() for p in m.parameters() if p.ndim > 1)  # noqa: E731
    assert norm(shrunk) < norm(plain)


def test_diverging_loss_is_an_error() -> None:
    model = torch.nn.Linear(2, 2)

    def nan_step(m, batch):
        return m(batch[0]).sum() * float("nan")

    with pytest.raises(TrainingDiverged):
        fit(model, nan_step, lambda epoch: [(torch.ones(1, 2),)], lambda m: {"loss": 0.0},
            torch.optim.SGD(model.parameters(), lr=0.1), TrainConfig(epochs=1, log=None))


def test_shuffled_batches_cover_everything_once() -> None:
    x = torch.arange(10)
    epoch = ShuffledBatches((x,), 4, seed=1)(1)
    assert len(epoch) == 3
    seen = torch.cat([b[0] for b in epoch])
    assert sorted(seen.tolist()) == list(range(10))
    assert not torch.equal(seen, torch.cat([b[0] for b in ShuffledBatches((x,), 4, 1)(2)]))


def test_time_budget_stops_before_an_epoch_would_overrun() -> None:
    x, y = _data(64)
    model = build_classifier("softmax", (1, 8, 8), 3)

    def slow_step(model, batch):
        time.sleep(0.05)  # 4 batches: an epoch of about 0.2 s
        return _step(model, batch)

    result = fit(model, slow_step, ShuffledBatches((x, y), 16, 0),
                 lambda m: {"loss": 1.0}, torch.optim.SGD(model.parameters(), lr=0.01),
                 TrainConfig(epochs=50, log=None, max_seconds=0.5))
    assert result.stopped_early and 1 <= result.epochs_run <= 3
    longest = max(r.seconds for r in result.history)
    assert result.seconds <= 0.5 + longest
