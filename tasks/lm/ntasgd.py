"""NT-ASGD: SGD until validation stalls, then averaged SGD; evaluation on the averaged weights.

Source: Merity, Keskar, Socher (2018), "Regularizing and Optimizing LSTM Language Models",
Algorithm 1 (non-monotonically triggered ASGD), as coded in salesforce/awd-lstm-lm:

- main.py, after each validation (``history`` = all earlier validation losses):
  ``if SGD and len(history) > nonmono and val_loss > min(history[:-nonmono])``: switch to
  ``torch.optim.ASGD(params, lr, t0=0, lambd=0., weight_decay=wdecay)``; i.e. switch when the
  loss is worse than the best loss of every epoch except the last ``nonmono`` ones. Only SGD
  switches (the WikiText-103 QRNN run uses Adam and never does).
- Once switched, validation runs on ASGD's running average ``ax`` of the iterates, swapped in for
  the evaluation and out afterwards.
- finetune.py: ASGD from the first step; training ends when the same rule fires.

The helper never builds a training loop of its own: ``epoch_end`` replaces ``loop.optimizer``
with an ASGD built from the current optimizer's param groups (their lr and weight_decay). In
finetune mode ASGD must run from the start, but the loop's optimizer only becomes reachable at the
first epoch end; until then the helper keeps ASGD's average itself after every step (same rule:
ax = p at steps 1 and 2, then ax += (p - ax) / (k - 1)), and hands it over to the ASGD optimizer it
installs. With t0 = 0 and lambd = 0, ASGD's update is plain SGD's, so this equals ASGD from the
start when the loop's optimizer is SGD without momentum (ASGD uses the previous step's lr, as in
awd-lstm-lm, which matters only under the per-step lr scaling of variable-length BPTT).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


def nonmono_triggered(history: Sequence[float], val_loss: float, nonmono: int) -> bool:
    """AWD-LSTM's rule: val_loss is worse than the best of ``history`` but its last ``nonmono``."""
    return len(history) > nonmono and val_loss > min(history[:-nonmono])


class NTASGD:
    """Non-monotonically triggered switch from SGD to ASGD, and the averaged weights.

    Args:
        params: the parameters the loop's optimizer trains.
        nonmono: the non-monotone interval.
        enabled: False keeps the loop's optimizer throughout.
        finetune: ASGD from the start (awd-lstm-lm's finetune.py); ``finished`` becomes True and
            ``loop.request_stop()`` is called (when the loop has it) once the rule fires.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        nonmono: int = 5,
        enabled: bool = True,
        finetune: bool = False,
    ) -> None:
        if nonmono < 1:
            raise ValueError(f"nonmono must be >= 1, got {nonmono}")
        self.params = list(params)
        self.nonmono, self.enabled, self.finetune = nonmono, enabled, finetune
        self.history: list[float] = []
        self.switch_epoch: int | None = None
        self.finished = False
        self.asgd: torch.optim.ASGD | None = None
        self._average: list[torch.Tensor] | None = None  # ax while no installed ASGD holds it
        self._average_steps = 0
        self._warned = False

    @property
    def switched(self) -> bool:
        return self.switch_epoch is not None

    # ------------------------------------------------------------------ per step / per epoch

    @torch.no_grad()
    def after_step(self) -> None:
        """Update the helper's own average (finetune before the switch, or after a resume)."""
        if self.asgd is not None or not (self.finetune or self.switched):
            return
        self._average_steps += 1
        mu = 1.0 / max(1, self._average_steps - 1)  # torch ASGD's mu with t0 = 0
        if self._average is None or mu == 1.0:
            self._average = [p.detach().clone() for p in self.params]
        else:
            for ax, p in zip(self._average, self.params):
                ax.add_(p.sub(ax).mul_(mu))

    def epoch_end(self, epoch: int, val_loss: float, loop: Any) -> str | None:
        """Apply the rule to this epoch's validation loss: "switched", "finished" or None."""
        event = None
        triggered = nonmono_triggered(self.history, val_loss, self.nonmono)
        if self.finetune:
            if triggered and not self.finished:
                self.finished, event = True, "finished"
                logger.info("NT-ASGD finetune: no improvement at epoch %d; done", epoch)
                request_stop = getattr(loop, "request_stop", None)
                if callable(request_stop):
                    request_stop()
                else:
                    logger.warning("the loop has no request_stop(); finetuning goes on")
            if self._install(epoch, loop) and event is None:
                event = "switched"
        elif self.enabled and (triggered or self.switched):
            if self._install(epoch, loop) and not self.switched:
                event = "switched"
        if event == "switched" and self.switch_epoch is None:
            self.switch_epoch = epoch
            logger.info("NT-ASGD: switched to ASGD at epoch %d (val loss %.4f)", epoch, val_loss)
        self.history.append(float(val_loss))
        return event

    def resume(self, loop: Any) -> None:
        """After `load_state_dict`: put ASGD back on the loop if the run had switched to it."""
        if self.switched or (self.finetune and self._average is not None):
            self._install(self.switch_epoch or 0, loop)

    def _install(self, epoch: int, loop: Any) -> bool:
        """Replace loop.optimizer by ASGD (once); True when this call installed it."""
        current = loop.optimizer
        if self.asgd is not None and current is self.asgd:
            return False
        if not isinstance(current, torch.optim.SGD):
            if not self._warned:
                logger.warning(
                    "NT-ASGD: the optimizer is %s, not SGD; not switching (awd-lstm-lm switches "
                    "SGD only)",
                    type(current).__name__,
                )
                self._warned = True
            return False
        if any(group.get("momentum", 0.0) for group in current.param_groups):
            logger.warning("NT-ASGD: SGD had momentum; ASGD continues without it")
        groups = [
            {"params": g["params"], "lr": g["lr"], "weight_decay": g.get("weight_decay", 0.0)}
            for g in current.param_groups
        ]
        asgd = torch.optim.ASGD(groups, lr=groups[0]["lr"], t0=0.0, lambd=0.0)
        if self._average is not None:
            self._hand_over(asgd)
        loop.optimizer = self.asgd = asgd
        return True

    def _hand_over(self, asgd: torch.optim.ASGD) -> None:
        """Seed ASGD's state with the helper's average, as if ASGD had taken those steps."""
        steps = self._average_steps
        position = {id(p): i for i, p in enumerate(self.params)}
        for group in asgd.param_groups:
            for p in group["params"]:
                index = position.get(id(p))
                if index is None:  # not averaged here: ASGD starts its own average
                    continue
                asgd.state[p] = {
                    "step": torch.tensor(float(steps), device=p.device),
                    "eta": torch.tensor(float(group["lr"]), device=p.device),
                    "mu": torch.tensor(1.0 / max(1, steps), device=p.device),
                    "ax": self._average[index].clone(),
                }
        self._average, self._average_steps = None, 0

    # ------------------------------------------------------------------ averaged weights

    def _pairs(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        if self.asgd is not None:
            states = [(p, self.asgd.state.get(p, {})) for p in self.params]
            return [(p, state["ax"]) for p, state in states if "ax" in state]
        if self._average is not None:
            return list(zip(self.params, self._average))
        return []

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Parameters hold the averaged iterates inside, their own values again after."""
        pairs = self._pairs()
        backup = [p.detach().clone() for p, _ in pairs]
        with torch.no_grad():
            for p, ax in pairs:
                p.copy_(ax)
        try:
            yield
        finally:
            with torch.no_grad():
                for (p, _), saved in zip(pairs, backup):
                    p.copy_(saved)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        pairs = dict((id(p), ax) for p, ax in self._pairs())
        average = [pairs[id(p)].clone() if id(p) in pairs else None for p in self.params]
        steps = self._average_steps
        if self.asgd is not None:
            states = self.asgd.state.values()
            steps = max((int(s["step"]) for s in states if "step" in s), default=0)
        return {
            "history": list(self.history),
            "switch_epoch": self.switch_epoch,
            "finished": self.finished,
            "average": average if pairs else None,
            "average_steps": steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rule's history and the average; `resume(loop)` then reinstalls ASGD."""
        self.history = list(state["history"])
        self.switch_epoch = state["switch_epoch"]
        self.finished = state["finished"]
        self.asgd = None
        average = state["average"]
        if average is not None:
            self._average = [
                (ax if ax is not None else p.detach()).to(p.device).clone()
                for ax, p in zip(average, self.params)
            ]
        else:
            self._average = None
        self._average_steps = state["average_steps"]
