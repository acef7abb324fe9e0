from training.models.classifiers import (
    ACTIVATIONS,
    ARCHITECTURES,
    MLP,
    SmallCNN,
    SoftmaxRegression,
    build_classifier,
)

__all__ = ["ACTIVATIONS", "ARCHITECTURES", "MLP", "SmallCNN", "SoftmaxRegression",
           "build_classifier"]
