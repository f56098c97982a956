"""AWD-LSTM (weight drop, dropouts, tying, AR/TAR) and the QRNN (recurrence, window, zoneout)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tasks.lm.awd_lstm import AWDLSTM, WeightDropLSTM
from tasks.lm.dropout import LockedDropout, embedding_dropout
from tasks.lm.qrnn import QRNNLM, QRNNLayer, forget_mult
from tasks.lm.softmax import FullSoftmax, TiedAdaptiveSoftmax


def _copy_to_lstm(layer: WeightDropLSTM) -> nn.LSTM:
    reference = nn.LSTM(layer.input_size, layer.hidden_size)
    reference.load_state_dict(layer.lstm.state_dict())
    return reference


def _run(module, x, hidden):
    out, (h, c) = module(x, hidden)
    (out.square().sum() + h.sum() + c.sum()).backward()
    return out, h, c


@pytest.mark.parametrize("train", [True, False])
def test_weight_drop_lstm_without_dropout_equals_nn_lstm_exactly(train):
    layer = WeightDropLSTM(6, 5, wdrop=0.0 if train else 0.5).train(train)
    reference = _copy_to_lstm(layer)
    x = torch.randn(9, 4, 6)
    hidden = (torch.randn(1, 4, 5), torch.randn(1, 4, 5))
    ours, ref = _run(layer, x, hidden), _run(reference, x, hidden)
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    for name, param in reference.named_parameters():
        assert torch.equal(getattr(layer.lstm, name).grad, param.grad), name


def test_weight_drop_is_random_reproducible_and_patches_nothing():
    layer = WeightDropLSTM(6, 5, wdrop=0.5).train()
    weight = layer.lstm.weight_hh_l0
    saved = weight.detach().clone()
    x = torch.randn(9, 4, 6)
    reference_out, _ = _copy_to_lstm(layer)(x)
    torch.manual_seed(7)
    first, _ = layer(x)
    second, _ = layer(x)
    torch.manual_seed(7)
    again, _ = layer(x)
    assert not torch.equal(first, reference_out) and not torch.equal(first, second)
    assert torch.equal(first, again)
    assert layer.lstm.weight_hh_l0 is weight and torch.equal(weight, saved)
    assert [name for name, _ in layer.named_parameters()] == [
        "lstm.weight_ih_l0",
        "lstm.weight_hh_l0",
        "lstm.bias_ih_l0",
        "lstm.bias_hh_l0",
    ]
    again.sum().backward()
    dropped = (weight.grad == 0).float().mean().item()  # one mask for all time steps
    assert 0.35 < dropped < 0.65
    eval_out, _ = layer.eval()(x)
    assert torch.equal(eval_out, reference_out)


def test_locked_and_embedding_dropout():
    drop = LockedDropout().train()
    out = drop(torch.ones(5, 3, 8), 0.5)
    assert torch.equal(out, out[:1].expand_as(out))  # one mask over time
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(drop.eval()(out, 0.5), out)
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        drop(torch.ones(5, 3), 0.5)
    weight = torch.randn(10, 4)
    tokens = torch.tensor([[1, 2, 1], [2, 1, 3]])
    emb = embedding_dropout(weight, tokens, 0.5, training=True)
    for word in (1, 2, 3):
        rows = emb[tokens == word]
        kept = rows.abs().sum(1) > 0
        assert kept.all() or not kept.any()  # a word is dropped at all its positions or none
        if kept.all():
            torch.testing.assert_close(rows, 2 * weight[word].expand_as(rows))
    assert torch.equal(embedding_dropout(weight, tokens, 0.5, training=False), weight[tokens])


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_awd_lstm_tying_sizes_and_parameter_count():
    vocab, emsize, nhid = 50, 8, 12
    model = AWDLSTM(vocab, emsize=emsize, nhid=nhid, nlayers=3)
    assert model.decoder.weight is model.encoder.weight
    assert [rnn.hidden_size for rnn in model.rnns] == [nhid, nhid, emsize]

    def lstm(n_in, n_out):
        return 4 * n_out * (n_in + n_out) + 8 * n_out

    expected = vocab * emsize + lstm(emsize, nhid) + lstm(nhid, nhid) + lstm(nhid, emsize) + vocab
    assert _count(model) == expected
    untied = AWDLSTM(vocab, emsize=emsize, nhid=nhid, nlayers=3, tie_weights=False)
    assert untied.rnns[-1].hidden_size == nhid and untied.decoder.weight.shape == (vocab, nhid)


def test_awd_lstm_forward_ar_tar_and_carried_state():
    model = AWDLSTM(30, emsize=6, nhid=10, nlayers=2).eval()
    tokens = torch.randint(0, 30, (11, 3))
    targets = torch.randint(0, 30, (11, 3))
    out = model(tokens, model.init_hidden(3), targets)
    assert out.nll.shape == (11, 3) and out.ar.dim() == 0 and out.tar.dim() == 0
    log_probs = model.decoder.log_prob(torch.zeros(1, 6))
    torch.testing.assert_close(log_probs.exp().sum(), torch.tensor(1.0))
    # carrying the state over two chunks equals one pass (eval: no dropout)
    first = model(tokens[:4], model.init_hidden(3), targets[:4])
    second = model(tokens[4:], first.hidden, targets[4:])
    torch.testing.assert_close(torch.cat([first.nll, second.nll]), out.nll)
    single = model(tokens[:1], model.init_hidden(3), targets[:1])
    assert single.tar.item() == 0.0
    with pytest.raises(ValueError, match=r"\(11,\)"):
        model(tokens[:, 0], model.init_hidden(3), targets[:, 0])


@pytest.mark.parametrize("steps", [1, 2, 3, 8, 37])
def test_forget_mult_scan_equals_loop(steps):
    f = torch.rand(steps, 3, 5, dtype=torch.float64, requires_grad=True)
    z = torch.randn(steps, 3, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    scan = forget_mult(f, z, h0, "scan")
    loop = forget_mult(f, z, h0, "loop")
    torch.testing.assert_close(scan, loop, rtol=1e-12, atol=1e-12)
    grads_scan = torch.autograd.grad(scan.square().sum(), (f, z, h0))
    grads_loop = torch.autograd.grad(loop.square().sum(), (f, z, h0))
    for a, b in zip(grads_scan, grads_loop):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # by hand, first two steps
    c1 = f[0] * h0 + (1 - f[0]) * z[0]
    torch.testing.assert_close(loop[0], c1)
    if steps > 1:
        torch.testing.assert_close(loop[1], f[1] * c1 + (1 - f[1]) * z[1])


def test_qrnn_layer_window_carry_and_zoneout():
    layer = QRNNLayer(4, 6, window=2).eval()
    x = torch.randn(10, 3, 4)
    whole, (c_whole, prev_whole) = layer(x, layer.init_hidden(3))
    first, state = layer(x[:6], layer.init_hidden(3))
    second, (c_end, prev_end) = layer(x[6:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    torch.testing.assert_close(c_end, c_whole)
    assert torch.equal(prev_end, x[-1:]) and torch.equal(prev_whole, x[-1:])
    looped, _ = layer(x, layer.init_hidden(3), method="loop")
    torch.testing.assert_close(looped, whole)
    frozen = QRNNLayer(4, 6, window=1, zoneout=1.0).train()  # every unit zoned out: c stays c_0
    c0 = torch.randn(3, 6)
    _, (c_last, prev) = frozen(x, (c0, frozen.init_hidden(3)[1]))
    assert torch.equal(c_last, c0) and prev.shape == (0, 3, 4)


def test_qrnn_model_softmax_choice_and_tying():
    small = QRNNLM(40, emsize=8, nhid=12, nlayers=2)
    assert isinstance(small.decoder, FullSoftmax)  # default cutoffs exceed the vocabulary
    assert [rnn.window for rnn in small.rnns] == [2, 1]
    model = QRNNLM(40, emsize=8, nhid=12, nlayers=3, cutoffs=[10, 25])
    decoder = model.decoder
    assert isinstance(decoder, TiedAdaptiveSoftmax)
    assert decoder.head.weight is model.encoder.weight
    assert all(tail.weight is model.encoder.weight for tail in decoder.tail)
    hidden = torch.randn(7, 8)
    log_probs = decoder.log_prob(hidden)  # [7, 40]
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(7))
    targets = torch.tensor([0, 9, 10, 24, 25, 39, 3])
    torch.testing.assert_close(
        decoder(hidden, targets), -log_probs.gather(1, targets[:, None])[:, 0]
    )
    decoder(hidden, targets).sum().backward()
    row_grads = model.encoder.weight.grad.abs().sum(1)  # [40]
    assert (row_grads > 0).all()  # every word, head or tail, scores with its embedding row
    tokens = torch.randint(0, 40, (5, 2))
    out = model.train()(tokens, model.init_hidden(2), tokens)
    assert out.nll.shape == (5, 2) and torch.isfinite(out.nll).all()
