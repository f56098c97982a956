"""Language modelling on WikiText (paper Section 5.1): AWD-LSTM (WT2) and QRNN (WT103).

Modules: ``data`` (corpus, vocabulary by frequency, batchify, variable-length BPTT), ``download``
(file names, published sizes, HF download), ``dropout``, ``softmax``, ``rnnlm`` (the shared
model), ``awd_lstm``, ``qrnn``, ``ntasgd``, ``metrics`` and ``task`` (``LMTask``).
"""
