"""Harmlessness on the synthetic long-tail task of harmless.synthetic (a deliberately wrong
transfer: every rare embedding pulled to one point). Under SGD, Algorithm 1 keeps the main loss at
(or below) the no-transfer baseline, while the same transfer with a large fixed lambda ruins it.
"""

from __future__ import annotations

import pytest

from harmless.synthetic import train_long_tail


@pytest.mark.slow
def test_lexico_is_harmless_where_a_large_fixed_lambda_is_not():
    baseline = train_long_tail("none")
    lexico = train_long_tail("lexico")
    fixed = train_long_tail("fixed", lam=10.0)
    # Measured: baseline 0.083, lexico 0.004, fixed(10) 2.00.
    assert lexico <= baseline + 0.02
    assert fixed >= baseline + 1.0


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer must be"):
        train_long_tail("none", optimizer="rmsprop")
