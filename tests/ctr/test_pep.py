"""PEP's soft threshold, its search to a parameter budget, the mask cache and the retrain start."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.ctr import pep
from tasks.ctr.models import DeepFM
from tasks.ctr.pep import SoftThreshold, search_mask, search_masks, soft_threshold

V, F, D = 60, 3, 8  # 480 embedding parameters
# settings that prune this small table in a few dozen steps (PEP's own start at s = -15 needs
# thousands): threshold sigmoid(-2) = 0.12 against Xavier weights in +-0.30, lr 2e-2
FAST = {"threshold_init": -2.0, "lr": 2e-2, "batch_size": 256, "max_epochs": 20}


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.randint(0, 20, (3000,), generator=g) + 20 * k for k in range(F)], 1)
    w = torch.randn(V, generator=g)
    y = (torch.rand(3000, generator=g) < torch.sigmoid(w[x].sum(1))).float()
    return x, y


def fresh_model() -> DeepFM:
    torch.manual_seed(0)
    return DeepFM(V, F, D, [8])


def test_soft_threshold_by_hand():
    v = torch.tensor([-0.5, -0.05, 0.0, 0.05, 0.5])
    s = torch.tensor(math.log(0.1 / 0.9))  # sigmoid(s) = 0.1
    assert torch.allclose(soft_threshold(v, s), torch.tensor([-0.4, 0.0, 0.0, 0.0, 0.4]))


@pytest.mark.parametrize(
    ("granularity", "shape"),
    [("global", (1,)), ("dimension", (D,)), ("feature", (V, 1)), ("feature_dim", (V, D))],
)
def test_threshold_granularity(granularity, shape):
    module = SoftThreshold(V, D, granularity, init=-15.0)
    assert tuple(module.s.shape) == shape and (module.s == -15.0).all()
    assert module(torch.randn(V, D)).shape == (V, D)


def test_unknown_granularity():
    with pytest.raises(ValueError, match="unknown granularity"):
        SoftThreshold(V, D, "row")


def test_search_reaches_the_budget(problem, one_thread):
    x, y = problem
    model = fresh_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    found = search_masks(model, x, y, [150], seed=0, **FAST)[150]
    assert found.count <= 150 and int(found.mask.sum()) == found.count
    assert found.mask.shape == (V, D) and found.mask.dtype == torch.bool
    assert found.step > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left as it was
    # retrain: the same initialisation, with the mask fixed
    model.set_mask(found.mask)
    assert model.nonzero_embedding_params() <= found.count
    kept = found.mask
    assert torch.equal(model.embedding.weight[kept], before["embedding.weight"][kept])


def test_a_larger_threshold_lr_reaches_the_budget_sooner(problem, one_thread):
    x, y = problem
    slow = {**FAST, "threshold_init": -3.0, "lr": 5e-3, "max_epochs": 200}
    base = search_masks(fresh_model(), x, y, [250], seed=0, **slow)[250]
    fast = search_masks(fresh_model(), x, y, [250], seed=0, **slow, threshold_lr=5e-2)[250]
    same = search_masks(fresh_model(), x, y, [250], seed=0, **slow, threshold_lr=5e-3)[250]
    assert fast.step < base.step / 2
    assert same.step == base.step and torch.equal(same.mask, base.mask)  # default: lr


def test_search_is_deterministic_per_seed(problem, one_thread):
    x, y = problem
    a = search_masks(fresh_model(), x, y, [200], seed=1, **FAST)[200]
    b = search_masks(fresh_model(), x, y, [200], seed=1, **FAST)[200]
    assert torch.equal(a.mask, b.mask) and a.step == b.step


def test_search_that_cannot_reach_the_budget_says_so(problem, tmp_path, one_thread):
    x, y = problem
    options = {**FAST, "max_epochs": 1}
    with pytest.raises(pep.BudgetNotReached, match=r"after 1 epochs at \d+ .*budget\(s\) \[10\]"):
        search_masks(fresh_model(), x, y, [10], seed=0, **options)
    key = {"data": "toy"}
    with pytest.raises(pep.BudgetNotReached):  # the budgets it did reach are cached all the same
        search_mask(
            fresh_model(),
            x,
            y,
            10,
            seed=0,
            cache_dir=tmp_path,
            cache_key=key,
            also=[300],
            **options,
        )
    assert pep.mask_path(tmp_path, {**key, "seed": 0, "search": options}, 300).is_file()


def test_masks_are_cached_with_the_larger_budgets(problem, tmp_path, monkeypatch, one_thread):
    x, y = problem
    key = {"data": "toy", "model": "DeepFM", "dim": D}
    first = search_mask(
        fresh_model(), x, y, 150, seed=0, cache_dir=tmp_path, cache_key=key, also=(200, 100), **FAST
    )
    assert pep.mask_path(tmp_path, {**key, "seed": 0, "search": FAST}, 200).is_file()
    assert not pep.mask_path(tmp_path, {**key, "seed": 0, "search": FAST}, 100).is_file()

    def no_search(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(pep, "search_masks", no_search)
    again = search_mask(fresh_model(), x, y, 150, seed=0, cache_dir=tmp_path, cache_key=key, **FAST)
    assert torch.equal(again.mask, first.mask) and again.count == first.count
    larger = search_mask(
        fresh_model(), x, y, 200, seed=0, cache_dir=tmp_path, cache_key=key, **FAST
    )
    assert larger.count <= 200 and larger.budget == 200
    with pytest.raises(AssertionError, match="cache"):  # another seed is another search
        search_mask(fresh_model(), x, y, 150, seed=1, cache_dir=tmp_path, cache_key=key, **FAST)
