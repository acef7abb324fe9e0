from __future__ import annotations

import pytest
import torch
from torch import nn

from training.models import MLP, SmallCNN, SoftmaxRegression, build_classifier


@pytest.mark.parametrize("arch", ["softmax", "mlp", "cnn"])
@pytest.mark.parametrize("shape,classes", [((1, 28, 28), 10), ((1, 16, 12), 3)])
def test_every_arch_returns_logits_of_the_right_shape(arch: str, shape, classes: int) -> None:
    model = build_classifier(arch, shape, classes, hidden=[32], dropout=0.1).eval()
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, classes)
    # logits, not probabilities: rows need not sum to 1 and may be negative
    assert not torch.allclose(out.sum(1), torch.ones(5))


def test_softmax_regression_is_one_linear_layer() -> None:
    model = SoftmaxRegression(784, 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].weight.shape == (10, 784)


@pytest.mark.parametrize("activation,cls", [("relu", nn.ReLU), ("tanh", nn.Tanh),
                                            ("leaky_relu", nn.LeakyReLU), ("elu", nn.ELU)])
def test_mlp_layers_and_activation(activation: str, cls: type) -> None:
    model = MLP(20, 4, hidden=[8, 6], activation=activation, dropout=0.3)
    sizes = [(m.in_features, m.out_features) for m in model.modules()
             if isinstance(m, nn.Linear)]
    assert sizes == [(20, 8), (8, 6), (6, 4)]
    assert sum(isinstance(m, cls) for m in model.modules()) == 2
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, nn.Dropout))


def test_dropout_only_in_training_mode() -> None:
    model = MLP(20, 4, hidden=[64], dropout=0.5)
    x = torch.randn(3, 20)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_cnn_rejects_images_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        SmallCNN(1, 3, 3, 10)


def test_unknown_names_fail_clearly() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_classifier("resnet", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="unknown activation"):
        build_classifier("mlp", (1, 28, 28), 10, activation="swish")
