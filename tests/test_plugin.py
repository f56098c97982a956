"""The plug-in's training step: each mode against its formula, on dense, sparse, tied and
several tables, with a gradient scaler, and its errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from harmless.lexico import global_lambda, itemwise_lambda
from harmless.losses import FRAGE
from harmless.plugin import HarmlessTransfer
from tests.toy_losses import MeanMatch, PullToPoint

V, D = 12, 4
DOMAINS = SimpleNamespace(source=np.arange(0, 4), target=np.arange(4, 12))


class Bag(nn.Module):
    """Mean of embedded ids -> linear classifier; optionally a sparse embedding."""

    def __init__(self, sparse: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(V, D, sparse=sparse)
        self.head = nn.Linear(D, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(ids).mean(dim=1))


def _batch():
    ids = torch.tensor([[0, 5, 6], [1, 5, 9]])
    return ids, torch.tensor([0, 2])


def _main_loss(model):
    ids, y = _batch()
    return nn.functional.cross_entropy(model(ids), y), ids


def _plain_grads(model):
    model.zero_grad()
    loss, _ = _main_loss(model)
    loss.backward()
    return {n: p.grad.to_dense().clone() for n, p in model.named_parameters()}, loss.detach()


def _transfer_grad(weight, rows, loss_fn, source_rows=None):
    target = weight.detach()[rows].clone().requires_grad_(True)
    source = weight.detach()[source_rows] if source_rows is not None else target.new_empty(0, D)
    (g,) = torch.autograd.grad(loss_fn(source, target), target)
    return g


def test_mode_none_is_plain_backward():
    model = Bag()
    plain, _ = _plain_grads(model)
    model.zero_grad()
    loss, ids = _main_loss(model)
    HarmlessTransfer(model.embedding, PullToPoint(torch.ones(D)), DOMAINS, mode="none").backward(
        loss, ids
    )
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, plain[n])


def test_fixed_mode_equals_gradient_of_regularised_loss():
    model = Bag()
    point = torch.ones(D)
    lam = 0.3
    # Reference: autograd of l_main + lam * l_transfer on the target rows in the batch (5, 6, 9).
    model.zero_grad()
    loss, _ = _main_loss(model)
    rows = torch.tensor([5, 6, 9])
    (loss + lam * PullToPoint(point)(None, model.embedding.weight[rows])).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    loss, ids = _main_loss(model)
    plugin = HarmlessTransfer(model.embedding, PullToPoint(point), DOMAINS, mode="fixed", lam=lam)
    plugin.backward(loss, ids)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[n], atol=1e-6), n


def test_lexico_follows_algorithm_1_row_by_row():
    model = Bag()
    plain, loss_value = _plain_grads(model)
    loss_fn = PullToPoint(torch.full((D,), 2.0))
    rows = torch.tensor([0, 1, 5, 6, 9])  # the batch; 5, 6 and 9 are targets
    g_t = torch.zeros(len(rows), D)
    g_t[2:] = _transfer_grad(model.embedding.weight, torch.tensor([5, 6, 9]), loss_fn)
    g_m = plain["embedding.weight"][rows]
    lam = itemwise_lambda(g_m, g_t, loss_value)
    expected = plain["embedding.weight"].clone()
    expected[rows] = g_t + lam[:, None] * g_m

    model.zero_grad()
    loss, ids = _main_loss(model)
    stats = HarmlessTransfer(model.embedding, loss_fn, DOMAINS).backward(loss, ids)
    assert torch.allclose(model.embedding.weight.grad, expected, atol=1e-6)
    # The network keeps the main gradient alone.
    assert torch.equal(model.head.weight.grad, plain["head.weight"])
    assert stats["rows/main"] == 5 and stats["rows/transfer"] == 3
    assert stats["rescaled_only"] == pytest.approx(2 / 5)
    assert stats["lambda_max"] == pytest.approx(lam.max().item())
    assert stats["barrier_active"] == pytest.approx((lam > 0).float().mean().item())


def test_scale_only_rescales_main_gradient():
    model = Bag()
    plain, loss_value = _plain_grads(model)
    model.zero_grad()
    loss, ids = _main_loss(model)
    plugin = HarmlessTransfer(model.embedding, None, DOMAINS, mode="scale-only")
    plugin.backward(loss, ids)
    g = plain["embedding.weight"]
    sq = g.square().sum(1)
    factor = torch.where(sq > 0, 2.0 * torch.clamp(loss_value / sq, max=1.0), 0.0)
    assert torch.allclose(model.embedding.weight.grad, factor[:, None] * g, atol=1e-6)


def test_sparse_gradient_matches_dense():
    dense, sparse = Bag(), Bag(sparse=True)
    sparse.load_state_dict(dense.state_dict())
    grads = []
    for model in (dense, sparse):
        model.zero_grad()
        loss, ids = _main_loss(model)
        plugin = HarmlessTransfer(model.embedding, PullToPoint(torch.ones(D)), DOMAINS)
        plugin.backward(loss, ids)
        grads.append(model.embedding.weight.grad)
    assert grads[1].is_sparse
    assert torch.allclose(grads[0], grads[1].to_dense(), atol=1e-6)


def test_scope_all_reaches_target_rows_outside_the_batch():
    model = Bag()
    model.zero_grad()
    loss, ids = _main_loss(model)
    loss_fn = PullToPoint(torch.ones(D))
    HarmlessTransfer(model.embedding, loss_fn, DOMAINS, scope="all").backward(loss, ids)
    # Row 11 is a target outside the batch: no main gradient, so lambda = 0 and mu = g_t.
    g_t = _transfer_grad(model.embedding.weight, torch.arange(4, 12), loss_fn)
    assert torch.allclose(model.embedding.weight.grad[11], g_t[-1], atol=1e-6)
    # Row 2 is neither in the batch nor a target: untouched.
    assert torch.equal(model.embedding.weight.grad[2], torch.zeros(D))


class Tied(nn.Module):
    """Input embedding tied to the output layer: every row gets a main gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(V, D)
        self.proj = nn.Linear(D, D)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embedding(ids)) @ self.embedding.weight.T


def test_tied_embeddings_every_row_has_a_main_gradient():
    model = Tied()
    ids = torch.tensor([0, 5])
    loss = nn.functional.cross_entropy(model(ids), torch.tensor([1, 2]))
    stats = HarmlessTransfer(model.embedding, MeanMatch(), DOMAINS).backward(loss, ids)
    assert stats["rows/main"] == V
    assert stats["rows/transfer"] == 1  # only row 5 is a target in the batch


def test_several_tables_each_with_its_own_loss():
    tables = nn.ModuleDict({"a": nn.Embedding(V, D), "b": nn.Embedding(V, D)})
    ids = {"a": torch.tensor([0, 5]), "b": torch.tensor([7, 8])}
    loss = sum(tables[k](v).sum() for k, v in ids.items()).square() / 100
    losses = {"a": PullToPoint(torch.zeros(D)), "b": None}
    HarmlessTransfer(dict(tables), losses, {"a": DOMAINS, "b": DOMAINS}).backward(loss, ids)
    # Table b has no transfer loss: its gradient is the plain main gradient.
    total = sum(tables[k](v).sum() for k, v in ids.items()).detach()
    assert torch.allclose(tables["b"].weight.grad[7], torch.full((D,), 2 * total.item() / 100))
    assert not torch.allclose(tables["a"].weight.grad[5], torch.full((D,), 2 * total.item() / 100))


def test_loss_statistics_of_several_tables_are_averaged_and_kept_per_table():
    tables = {"a": nn.Embedding(V, D), "b": nn.Embedding(V, D)}
    ids = {"a": torch.tensor([0, 5]), "b": torch.tensor([1, 8])}
    losses = {name: FRAGE(dim=D, seed=k) for k, name in enumerate(tables)}
    loss = sum(tables[k](v).sum() for k, v in ids.items()).square() / 100
    plugin = HarmlessTransfer(tables, losses, {"a": DOMAINS, "b": DOMAINS})
    stats = plugin.backward(loss, ids)
    for key in ("disc_acc", "disc_loss"):
        a, b = stats[f"{key}/a"], stats[f"{key}/b"]
        assert stats[key] == pytest.approx((a + b) / 2)
    single = HarmlessTransfer(tables["a"], FRAGE(dim=D), DOMAINS)
    loss = tables["a"](ids["a"]).sum().square() / 100
    assert not any("/" in key for key in single.backward(loss, ids["a"]) if "disc" in key)


def test_grad_scaler_combines_unscaled_values():
    results = []
    for scale in (None, 1024.0):
        torch.manual_seed(1)
        model = Bag()
        model.zero_grad()
        loss, ids = _main_loss(model)
        scaler = torch.amp.GradScaler("cpu", init_scale=scale) if scale else None
        HarmlessTransfer(model.embedding, PullToPoint(torch.ones(D)), DOMAINS).backward(
            loss, ids, scaler=scaler
        )
        grad = model.embedding.weight.grad.clone()
        results.append(grad / (scale or 1.0))
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_lexico_global_uses_all_parameters():
    model = Bag()
    plain, loss_value = _plain_grads(model)
    loss_fn = PullToPoint(torch.ones(D))
    g_t = torch.zeros(V, D)
    g_t[[5, 6, 9]] = _transfer_grad(model.embedding.weight, torch.tensor([5, 6, 9]), loss_fn)
    mains = [plain["embedding.weight"], plain["head.weight"], plain["head.bias"]]
    transfers = [g_t, torch.zeros_like(mains[1]), torch.zeros_like(mains[2])]
    lam = global_lambda(mains, transfers, loss_value)

    model.zero_grad()
    loss, ids = _main_loss(model)
    plugin = HarmlessTransfer(
        model.embedding, loss_fn, DOMAINS, mode="lexico-global", parameters=model.parameters()
    )
    stats = plugin.backward(loss, ids)
    assert stats["lambda_max"] == pytest.approx(lam.item(), rel=1e-5)
    expected = g_t + lam * plain["embedding.weight"]
    assert torch.allclose(model.embedding.weight.grad, expected, atol=1e-6)
    assert torch.equal(model.head.weight.grad, plain["head.weight"])


def test_global_rng_untouched_and_state_round_trip():
    model = Bag()
    plugin = HarmlessTransfer(model.embedding, MeanMatch(), DOMAINS, source_sample=2)
    before = torch.get_rng_state()
    loss, ids = _main_loss(model)
    plugin.backward(loss, ids)
    assert torch.equal(before, torch.get_rng_state())
    state = plugin.state_dict()
    first = torch.randperm(4, generator=plugin.generator)
    plugin.load_state_dict(state)
    assert torch.equal(first, torch.randperm(4, generator=plugin.generator))


def test_bad_inputs_stop_with_clear_messages():
    model = Bag()
    with pytest.raises(ValueError, match="unknown mode 'lexicon'; allowed: none, fixed"):
        HarmlessTransfer(model.embedding, MeanMatch(), DOMAINS, mode="lexicon")
    empty = SimpleNamespace(source=np.arange(4), target=np.array([], dtype=int))
    with pytest.raises(ValueError, match="empty target domain"):
        HarmlessTransfer(model.embedding, MeanMatch(), empty)
    outside = SimpleNamespace(source=np.arange(4), target=np.array([5, 40]))
    with pytest.raises(ValueError, match="id 40, outside the table of 12 rows"):
        HarmlessTransfer(model.embedding, MeanMatch(), outside)
    plugin = HarmlessTransfer(model.embedding, MeanMatch(), DOMAINS)
    loss, _ = _main_loss(model)
    with pytest.raises(ValueError, match="id 12, outside the table of 12 rows"):
        plugin.backward(loss, torch.tensor([3, 12]))
    with pytest.raises(FloatingPointError, match="not finite: nan"):
        plugin.backward(torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(ValueError, match=r"2-D parameter or nn.Embedding, got \(3,\)"):
        HarmlessTransfer(nn.Parameter(torch.zeros(3)), MeanMatch(), DOMAINS)


def test_bfloat16_table_combines_in_float32():
    model = Bag()
    reference = Bag()
    reference.load_state_dict(model.state_dict())
    model.embedding.to(torch.bfloat16)
    loss_fn = PullToPoint(torch.ones(D))
    grads = []
    for m in (model, reference):
        m.zero_grad()
        ids, y = _batch()
        emb = m.embedding(ids).float().mean(dim=1)
        loss = nn.functional.cross_entropy(m.head(emb), y)
        HarmlessTransfer(m.embedding, loss_fn, DOMAINS).backward(loss, ids)
        grads.append(m.embedding.weight.grad)
    assert grads[0].dtype == torch.bfloat16
    assert torch.allclose(grads[0].float(), grads[1], rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("sparse", [False, True])
def test_fields_sharing_one_table_govern_their_own_rows(sparse):
    # One table of 12 rows: field a = rows 0-5, field b = rows 6-9, rows 10-11 a third field
    # without transfer. Each field's rows get Algorithm 1 once; the third field's rows keep
    # their plain main gradient (no rescaling leaks into fields without transfer).
    model = Bag(sparse=sparse)
    plain, loss_value = _plain_grads(model)
    plain = plain["embedding.weight"]
    ids = torch.tensor([[0, 5, 6], [1, 9, 10]])
    y = torch.tensor([0, 2])
    fields = {"a": np.arange(0, 6), "b": np.arange(6, 10)}
    domains = {
        "a": SimpleNamespace(source=np.array([0, 1]), target=np.arange(2, 6)),
        "b": SimpleNamespace(source=np.array([6]), target=np.arange(7, 10)),
    }
    losses = {"a": PullToPoint(torch.ones(D)), "b": PullToPoint(-torch.ones(D))}
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(ids), y)
    loss.backward()
    plain = model.embedding.weight.grad.to_dense().clone()
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(ids), y)
    tables = {"a": model.embedding, "b": model.embedding}
    plugin = HarmlessTransfer(tables, losses, domains, items=fields)
    plugin.backward(loss, {"a": ids, "b": ids})
    grad = model.embedding.weight.grad.to_dense()
    assert torch.equal(grad[10], plain[10])  # no transfer field: untouched
    for name, rows, target in (("a", [0, 1, 5], [5]), ("b", [6, 9], [9])):
        rows = torch.tensor(rows)
        g_m = plain[rows]
        g_t = torch.zeros_like(g_m)
        t = torch.tensor(target)
        g_t[-1] = _transfer_grad(model.embedding.weight, t, losses[name])[0]
        lam = itemwise_lambda(g_m, g_t, loss.detach())
        assert torch.allclose(grad[rows], g_t + lam[:, None] * g_m, atol=1e-6), name


def test_shared_weight_needs_disjoint_items():
    emb = nn.Embedding(V, D)
    losses = {"a": MeanMatch(), "b": MeanMatch()}
    with pytest.raises(ValueError, match="share one weight: give each its items="):
        HarmlessTransfer({"a": emb, "b": emb}, losses, {"a": DOMAINS, "b": DOMAINS})
    overlap = {"a": np.arange(0, 12), "b": np.arange(0, 12)}
    with pytest.raises(ValueError, match="their items overlap"):
        HarmlessTransfer({"a": emb, "b": emb}, losses, {"a": DOMAINS, "b": DOMAINS}, items=overlap)
