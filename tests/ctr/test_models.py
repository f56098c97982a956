"""DeepFM and AutoInt+: shapes, exact parameter counts, input checks, the PEP mask."""

from __future__ import annotations

import pytest
import torch

from tasks.ctr.models import AutoInt, DeepFM, FieldAttention, attend_with_dropout

V, F, D = 50, 6, 8


def mlp_params(inp: int, hidden: list[int]) -> int:
    """Linear + BatchNorm (weight, bias) per hidden layer, then Linear(-> 1)."""
    total = 0
    for width in hidden:
        total += inp * width + width + 2 * width
        inp = width
    return total + inp + 1


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("dim", "hidden"), [(32, [100, 100]), (24, [400, 400, 400])])
def test_deepfm_parameter_count(dim, hidden):
    model = DeepFM(V, F, dim, hidden, dropout=0.2)
    expected = V * dim + V + 1 + mlp_params(F * dim, hidden)  # embedding, linear + bias, MLP
    assert count(model) == expected


def test_autoint_parameter_count():
    a, heads, layers = 64, 2, 3
    model = AutoInt(V, F, D, [16], attn_dim=a, num_heads=heads, num_layers=layers)
    attention = 3 * a * a + 3 * a + a * a + a  # in-projection (q, k, v) and out-projection
    expected = (
        V * D  # shared embedding
        + D * a
        + a  # embedding -> attention width
        + layers * attention
        + D * a
        + a  # residual projection
        + F * a
        + 1  # read-out
        + mlp_params(F * D, [16])
    )
    assert count(model) == expected
    assert count(AutoInt(V, F, D, [16], linear=True)) == expected + V + 1


@pytest.mark.parametrize("cls", [DeepFM, AutoInt])
def test_forward_shapes_and_int32_ids(cls):
    model = cls(V, F, D, [16, 8], dropout=0.1).eval()
    ids = torch.randint(0, V, (5, F))
    logits = model(ids)
    assert logits.shape == (5,) and logits.dtype == torch.float32
    assert torch.allclose(model(ids.int()), logits)
    assert model.embed(ids).shape == (5, F, D)


@pytest.mark.parametrize("cls", [DeepFM, AutoInt])
@pytest.mark.parametrize("shape", [(5,), (5, F, 1), (5, F + 1)])
def test_wrong_input_shape_is_named(cls, shape):
    model = cls(V, F, D, [8])
    with pytest.raises(ValueError, match=rf"ids must have shape \[batch, {F}\].*{shape}"):
        model(torch.zeros(shape, dtype=torch.long))


def test_constructor_checks():
    with pytest.raises(ValueError, match="num_items must be a positive int"):
        DeepFM(0, F, D, [8])
    with pytest.raises(ValueError, match="divisible"):
        AutoInt(V, F, D, [8], attn_dim=63, num_heads=2)


@pytest.mark.parametrize("cls", [DeepFM, AutoInt])
def test_mask_is_weight_times_mask(cls):
    model = cls(V, F, D, [8]).eval()
    mask = torch.rand(V, D) < 0.3
    reference = cls(V, F, D, [8]).eval()
    reference.load_state_dict(model.state_dict())
    model.set_mask(mask)
    assert (model.embedding.weight[~mask] == 0).all()
    with torch.no_grad():
        reference.embedding.weight.mul_(mask)
    ids = torch.randint(0, V, (7, F))
    assert torch.allclose(model(ids), reference(ids), atol=1e-6)
    model(ids).sum().backward()
    assert (model.embedding.weight.grad[~mask] == 0).all()
    assert model.nonzero_embedding_params() <= int(mask.sum())
    assert "embedding.mask" in model.state_dict()
    with pytest.raises(ValueError, match=r"mask must have shape \(50, 8\)"):
        model.set_mask(torch.ones(V, D + 1, dtype=torch.bool))


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_field_attention_is_multihead_attention(heads):
    torch.manual_seed(heads)
    reference = torch.nn.MultiheadAttention(16, heads, batch_first=True)
    layer = FieldAttention(16, heads)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(7, 5, 16)
    expected, _ = reference(x, x, x, need_weights=False)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)
    assert count(layer) == count(reference)


def test_attention_with_dropout_is_sdpa_at_zero_and_keeps_the_mean():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 2, 5, 8).unbind(0)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(attend_with_dropout(q, k, v, 0.0), expected)
    ones = torch.ones(2000, 2, 5, 8)
    dropped = attend_with_dropout(ones, ones, ones, 0.4)  # weights 1/5 each, scaled by 1/0.6
    assert dropped.mean().item() == pytest.approx(1.0, abs=0.02)
    assert dropped.std().item() > 0.1


def test_field_attention_dropout_acts_in_training_only():
    torch.manual_seed(0)
    reference = torch.nn.MultiheadAttention(16, 2, dropout=0.4, batch_first=True).eval()
    layer = FieldAttention(16, 2, dropout=0.4)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(7, 5, 16)
    expected, _ = reference(x, x, x, need_weights=False)
    torch.testing.assert_close(layer.eval()(x), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(layer.train()(x), expected, atol=1e-3)
