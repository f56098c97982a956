"""Toy task: items with Zipf frequencies, each with a class; rare items share their class with a
frequent "twin" so transfer from frequent to rare embeddings can help.

Every example is a bag of `bag` item ids whose label is the class of its first item; the model is
an embedding bag and a linear classifier. Used by the tests, the config smoke runs and `make demo`
before a real task exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from harmless.cooccur import record_cooccurrence
from harmless.domains import count_records
from harmless.experiment.task import StepOutput, TableInfo, Task


class BagClassifier(nn.Module):
    """Mean of the bag's embeddings, then a linear layer: ids [B, L] -> logits [B, C]."""

    def __init__(self, num_items: int, num_classes: int, dim: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_items, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape [B, L], got {tuple(ids.shape)}")
        return self.head(self.embedding(ids).mean(dim=1))


def make_dataset(num_items: int, num_classes: int, sizes: dict[str, int], bag: int, seed: int):
    """Per split, examples [size, bag] of item ids with Zipf frequencies, and labels [size].

    One world (item classes and twins) is drawn first; the splits are samples from it.
    """
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, num_items + 1) ** 1.1
    freq /= freq.sum()
    head = num_items // 5
    classes = rng.integers(0, num_classes, num_items)
    # Rare items take the class of a frequent twin, and appear beside the twin.
    twins = rng.integers(0, head, num_items)
    classes[head:] = classes[twins[head:]]
    data = {}
    for split, size in sizes.items():
        first = rng.choice(num_items, size=size, p=freq)
        context = rng.choice(num_items, size=(size, bag - 1), p=freq)
        context[:, 0] = np.where(first >= head, twins[first], context[:, 0])
        ids = np.concatenate([first[:, None], context], axis=1)
        data[split] = (ids.astype(np.int64), classes[first].astype(np.int64))
    return data


class ToyTask(Task):
    """The synthetic task; `model` is a callable (num_items, num_classes) -> nn.Module."""

    monitor, monitor_mode = "loss", "min"

    def __init__(
        self,
        model: Callable[..., nn.Module],
        num_items: int = 500,
        num_classes: int = 4,
        train_size: int = 4000,
        eval_size: int = 1000,
        bag: int = 3,
        batch_size: int = 64,
        data_seed: int = 0,
    ) -> None:
        self.model_factory = model
        self.num_items, self.num_classes, self.bag = num_items, num_classes, bag
        self.sizes = {"train": train_size, "valid": eval_size, "test": eval_size}
        self.batch_size, self.data_seed = batch_size, data_seed

    def setup(self, device: torch.device, seed: int) -> None:
        self.device = device
        data = make_dataset(self.num_items, self.num_classes, self.sizes, self.bag, self.data_seed)
        self.data = {
            split: (torch.from_numpy(ids).to(device), torch.from_numpy(labels).to(device))
            for split, (ids, labels) in data.items()
        }
        self.model = self.model_factory(num_items=self.num_items, num_classes=self.num_classes)
        self.model.to(device)

    def tables(self) -> dict[str, TableInfo]:
        records = self.data["train"][0].cpu().numpy()

        def cooccurrence(anchors: np.ndarray) -> sp.csr_matrix:
            return record_cooccurrence(records, anchors, self.num_items)

        counts = count_records(records, self.num_items)
        return {"embedding": TableInfo(self.model.embedding.weight, counts, cooccurrence)}

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator:
        ids, labels = self.data["train"]
        order = torch.randperm(len(ids), generator=generator).to(ids.device)
        return [(ids[chunk], labels[chunk]) for chunk in order.split(self.batch_size)]

    def train_loss(self, batch) -> StepOutput:
        ids, labels = batch
        loss = nn.functional.cross_entropy(self.model(ids), labels)
        return StepOutput(loss, {"embedding": ids}, num_examples=len(ids))

    def evaluate(self, split: str) -> dict[str, float]:
        ids, labels = self.data[split]
        logits = self.model(ids)
        loss = nn.functional.cross_entropy(logits, labels)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return {"loss": float(loss), "acc": float(acc)}

    def describe(self) -> dict[str, int]:
        return {"num_items": self.num_items, **{f"{k}_size": v for k, v in self.sizes.items()}}
