"""Is Algorithm 1 harmless under each optimizer? The synthetic task of harmless.synthetic
(a deliberately wrong transfer: every rare embedding pulled to one point), final main loss per mode.

    python benchmarks/harmlessness.py

Algorithm 1's barrier bounds <g_m, mu> for the raw update mu; SGD steps along mu, so the main
loss cannot rise to first order. Adam rescales each coordinate by its running RMS, which the
barrier does not see: the printout shows what that does on this task.
"""

from __future__ import annotations

from harmless.synthetic import train_long_tail

CASES = [("sgd", 2.0), ("adam", 0.05)]
MODES = [("none", 0.0), ("lexico", 0.0), ("scale-only", 0.0), ("fixed", 0.1), ("fixed", 10.0)]


def main() -> None:
    print(f"{'optimizer':<9} {'mode':<11} {'lambda':>6} {'main loss':>10} {'x baseline':>10}")
    for optimizer, lr in CASES:
        baseline = train_long_tail("none", optimizer=optimizer, lr=lr)
        for mode, lam in MODES:
            loss = train_long_tail(mode, lam, optimizer=optimizer, lr=lr)
            shown = f"{lam:g}" if mode == "fixed" else "-"
            print(f"{optimizer:<9} {mode:<11} {shown:>6} {loss:>10.4f} {loss / baseline:>10.2f}")


if __name__ == "__main__":
    main()
