"""Shared fixtures: a fixed seed for every test and a bank of gradient pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.bank import gradient_bank


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (legacy global seed for third-party code that uses it)


@pytest.fixture(scope="session")
def bank():
    return gradient_bank()
