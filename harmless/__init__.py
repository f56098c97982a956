"""harmless: harmless transfer learning for item embeddings, as a PyTorch plug-in.

from harmless import FRAGE, HarmlessTransfer, count_tokens, split_by_frequency
domains = split_by_frequency(count_tokens(train_ids, vocab_size))      # 80/20 rule
harmless = HarmlessTransfer(model.embedding, FRAGE(dim=400), domains)  # Algorithm 1
stats = harmless.backward(loss, ids=batch_ids)                          # not loss.backward()
"""

from harmless.cooccur import record_cooccurrence, top_k_anchors, window_cooccurrence
from harmless.domains import Domains, count_records, count_tokens, split_by_frequency
from harmless.lexico import global_lambda, itemwise_lambda
from harmless.losses import FRAGE, MMD, CosReg, MomentMatching, TransferLoss, build_transfer_loss
from harmless.plugin import HarmlessTransfer
from harmless.selection import Selection, select_target

__version__ = "0.1.0"

__all__ = [
    "FRAGE",
    "MMD",
    "CosReg",
    "Domains",
    "HarmlessTransfer",
    "MomentMatching",
    "Selection",
    "TransferLoss",
    "build_transfer_loss",
    "count_records",
    "count_tokens",
    "global_lambda",
    "itemwise_lambda",
    "record_cooccurrence",
    "select_target",
    "split_by_frequency",
    "top_k_anchors",
    "window_cooccurrence",
]
