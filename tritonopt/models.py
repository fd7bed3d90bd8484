"""Models shared by ``python -m tritonopt.demo`` and ``python -m tritonopt.verify``, defined once."""

import torch
from torch import nn


class LeNet(nn.Module):
    """LeNet from the optimizer tutorial: ``features`` (convolutions) and ``classifier`` (linear layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.view(-1, 16 * 5 * 5)
        return self.classifier(x)
