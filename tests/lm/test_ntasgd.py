"""NT-ASGD: the non-monotone switch, the averaged weights, finetuning, checkpoints."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tasks.lm.ntasgd import NTASGD, nonmono_triggered


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))


def _sgd_loop(model: nn.Module, momentum: float = 0.0) -> SimpleNamespace:
    groups = [
        {"params": model[0].parameters(), "lr": 0.5, "weight_decay": 1e-3},
        {"params": model[2].parameters(), "lr": 0.25, "weight_decay": 0.0},
    ]
    return SimpleNamespace(optimizer=torch.optim.SGD(groups, lr=0.5, momentum=momentum))


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 4, generator=generator)
    optimizer.zero_grad()
    model(x).square().mean().backward()
    optimizer.step()


def test_nonmono_rule():
    assert not nonmono_triggered([5, 4, 3], 9.0, 3)  # needs more than nonmono epochs
    assert not nonmono_triggered([5, 4, 3, 2.9], 4.9, 3)  # better than min([5])
    assert nonmono_triggered([5, 4, 3, 2.9], 5.1, 3)
    assert not nonmono_triggered([5, 4, 3, 2.9, 2.8], 2.95, 3)  # worse than 2.8 but not min(5, 4)


def test_switches_exactly_when_the_rule_fires():
    model = _model()
    loop = _sgd_loop(model)
    sgd = loop.optimizer
    helper = NTASGD(model.parameters(), nonmono=3)
    losses = [5.0, 4.0, 3.0, 2.9, 2.8, 2.95, 3.1, 3.5, 2.0]
    events = [helper.epoch_end(epoch, loss, loop) for epoch, loss in enumerate(losses, 1)]
    # epoch 6: 2.95 is worse than the last epochs' best (2.8) yet better than min(5, 4): no switch;
    # epoch 7: 3.1 > min(5, 4, 3) = 3: switch
    assert events == [None] * 6 + ["switched", None, None]
    assert helper.switch_epoch == 7 and helper.history == losses
    asgd = loop.optimizer
    assert isinstance(asgd, torch.optim.ASGD) and asgd is helper.asgd and asgd is not sgd
    for new, old in zip(asgd.param_groups, sgd.param_groups):
        assert new["params"] == old["params"]
        assert (new["lr"], new["weight_decay"]) == (old["lr"], old["weight_decay"])
        assert (new["t0"], new["lambd"]) == (0.0, 0.0)


def test_disabled_or_adam_never_switch():
    model = _model()
    loop = SimpleNamespace(optimizer=torch.optim.Adam(model.parameters()))
    helper = NTASGD(model.parameters(), nonmono=1)
    for epoch, loss in enumerate([1.0, 2.0, 3.0, 4.0], 1):
        assert helper.epoch_end(epoch, loss, loop) is None
    assert isinstance(loop.optimizer, torch.optim.Adam) and not helper.switched
    loop = _sgd_loop(model)
    off = NTASGD(model.parameters(), nonmono=1, enabled=False)
    for epoch, loss in enumerate([1.0, 2.0, 3.0, 4.0], 1):
        off.epoch_end(epoch, loss, loop)
    assert isinstance(loop.optimizer, torch.optim.SGD)


def test_averaged_weights_are_swapped_in_and_back():
    model = _model()
    loop = _sgd_loop(model)
    helper = NTASGD(model.parameters(), nonmono=1)
    for epoch, loss in enumerate([1.0, 2.0, 3.0], 1):
        helper.epoch_end(epoch, loss, loop)
    assert helper.switch_epoch == 3
    iterates = []
    for seed in range(4):
        _step(model, loop.optimizer, seed)
        iterates.append([p.detach().clone() for p in model.parameters()])
    raw = [p.detach().clone() for p in model.parameters()]
    with helper.averaged_weights():
        for index, p in enumerate(model.parameters()):
            assert torch.equal(p, loop.optimizer.state[p]["ax"])
            # torch's ASGD (t0 = 0) averages the iterates of steps 2..n
            expected = torch.stack([it[index] for it in iterates[1:]]).mean(0)
            torch.testing.assert_close(p.detach(), expected)
    for p, saved in zip(model.parameters(), raw):
        assert torch.equal(p, saved)


def test_finetune_equals_asgd_from_the_start():
    model = _model()
    reference = copy.deepcopy(model)
    loop = _sgd_loop(model)
    ref_loop = _sgd_loop(reference)
    ref_opt = torch.optim.ASGD(
        [
            {k: g[k] for k in ("params", "lr", "weight_decay")}
            for g in ref_loop.optimizer.param_groups
        ],
        lr=0.5,
        t0=0.0,
        lambd=0.0,
    )
    helper = NTASGD(model.parameters(), nonmono=2, finetune=True)
    for epoch, (steps, loss) in enumerate([(3, 4.0), (2, 3.0), (2, 3.5), (2, 5.0)], 1):
        for seed in range(steps):
            _step(model, loop.optimizer, 10 * epoch + seed)
            helper.after_step()
            _step(reference, ref_opt, 10 * epoch + seed)
        with helper.averaged_weights():
            averaged = [p.detach().clone() for p in model.parameters()]
        for p, q, ax in zip(model.parameters(), reference.parameters(), averaged):
            torch.testing.assert_close(p, q)
            torch.testing.assert_close(ax, ref_opt.state[q]["ax"])
        event = helper.epoch_end(epoch, loss, loop)
        assert event == {1: "switched", 4: "finished"}.get(epoch)
    assert isinstance(loop.optimizer, torch.optim.ASGD) and helper.finished


def test_finetune_asks_the_loop_to_stop():
    model = _model()
    stops = []
    loop = _sgd_loop(model)
    loop.request_stop = lambda: stops.append(True)
    helper = NTASGD(model.parameters(), nonmono=1, finetune=True)
    for epoch, loss in enumerate([2.0, 1.0, 3.0], 1):
        helper.epoch_end(epoch, loss, loop)
    assert stops == [True] and helper.finished


def test_state_dict_round_trip_resumes_the_average():
    model = _model()
    loop = _sgd_loop(model)
    helper = NTASGD(model.parameters(), nonmono=1)
    for epoch, loss in enumerate([1.0, 2.0, 3.0], 1):
        helper.epoch_end(epoch, loss, loop)
    for seed in range(3):
        _step(model, loop.optimizer, seed)
    state = helper.state_dict()
    with helper.averaged_weights():
        averaged = [p.detach().clone() for p in model.parameters()]
    resumed = NTASGD(model.parameters(), nonmono=1)
    resumed.load_state_dict(state)
    assert resumed.switch_epoch == 3 and resumed.history == [1.0, 2.0, 3.0]
    with resumed.averaged_weights():
        for p, ax in zip(model.parameters(), averaged):
            assert torch.equal(p, ax)
    new_loop = _sgd_loop(model)  # the loop rebuilt SGD from its config
    assert resumed.epoch_end(4, 3.0, new_loop) is None
    asgd = new_loop.optimizer
    assert isinstance(asgd, torch.optim.ASGD)
    for p, ax in zip(model.parameters(), averaged):
        assert torch.equal(asgd.state[p]["ax"], ax) and int(asgd.state[p]["step"]) == 3


def test_bad_nonmono():
    with pytest.raises(ValueError):
        NTASGD([], nonmono=0)
