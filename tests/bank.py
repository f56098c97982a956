"""A bank of (g_main, g_transfer, main_loss) cases for the property tests of the gradient layer.

It covers random directions, agreeing and opposing gradients, rows without a main or a transfer
gradient, tiny and huge scales, and main losses on either side of the squared gradient norms.
"""

from __future__ import annotations

import torch


def gradient_bank(seed: int = 0) -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    cases = []
    for n, d in [(1, 1), (3, 2), (17, 8), (64, 33)]:
        for loss in [0.0, 1e-3, 0.7, 50.0]:
            cases.append((f"random-{n}x{d}-L{loss}", randn(n, d), randn(n, d), loss))
    g = randn(20, 5)
    cases.append(("agreeing", g, 3.0 * g, 1.0))
    cases.append(("opposing", g, -2.0 * g, 1.0))
    eye = torch.eye(4, dtype=torch.float64)
    cases.append(("orthogonal", eye, eye.flip(0), 1.0))
    zero_main = randn(10, 4)
    zero_main[::2] = 0
    cases.append(("zero-main-rows", zero_main, randn(10, 4), 0.5))
    cases.append(("no-transfer", randn(10, 4), torch.zeros(10, 4, dtype=torch.float64), 0.5))
    cases.append(("tiny", 1e-20 * randn(8, 3), 1e-20 * randn(8, 3), 1e-3))
    cases.append(("huge", 1e6 * randn(8, 3), 1e6 * randn(8, 3), 2.0))
    cases.append(("float32", randn(12, 6).float(), randn(12, 6).float(), 0.3))
    return cases
