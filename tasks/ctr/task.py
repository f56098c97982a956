"""The CTR task (paper Section 5.3, Tables 6-8): DeepFM / AutoInt+ with PEP-sized embeddings.

Built by Hydra from a task config, for example (MovieLens-1M, DeepFM, 10k-parameter cell):

    _target_: tasks.ctr.task.CTRTask
    model: {_target_: tasks.ctr.models.DeepFM, _partial_: true, embed_dim: 32, mlp: [100, 100],
            dropout: 0.2}
    dataset: movielens1m
    ratings_file: ratings_no_timestamp.dat    # the local copy; drop "timestamp" from fields
    fields: [gender, age, occupation, zip, year, genres]
    transfer_fields: [zip]
    budget: 10000
    ema_decay: 0.999

Transfer applies to the rows of the transferred fields inside the ONE embedding table all fields
share: `tables()` gives one TableInfo per transferred field, all pointing at that table's weight,
each listing its field's id range in `items` (and its OOV id in `exclude`). With a `budget`, the
model is first pruned by PEP's search (cached, shared by every method of one cell) and trained
from its initialisation with the mask fixed; `after_step` keeps the pruned entries at zero
whatever the transfer gradient did. `eval_weights` swaps in an exponential moving average of the
weights when `ema_decay` is set (the paper adds EMA to reproduce PEP's numbers).

Evaluation: global AUC and log loss, AUC on head / tail rows (a row is "tail" if any
transferred field holds a value outside the 20% most frequent values of that field in training,
"head" if every one holds a frequent value; OOV values count as neither), and with
eval_protocol="pep" also PEP's per-batch mean AUC ("auc_pep") and PEP's model selection on the
test set: "auc_pep_best", the best test auc_pep of every test evaluation so far (with
`train.test_every=1`, the best epoch chosen on test, as PEP's code reports; optimistic by design,
offered to show how numbers produced that way compare with the global, validation-selected AUC).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harmless.cooccur import record_cooccurrence
from harmless.domains import split_by_frequency
from harmless.experiment.task import StepOutput, TableInfo, Task
from tasks.ctr.criteo import CRITEO_FIELDS
from tasks.ctr.data import DATASETS, SPLITS, CTRData, load_dataset
from tasks.ctr.metrics import ctr_metrics
from tasks.ctr.models import CTRModel
from tasks.ctr.movielens import ML_FIELDS
from tasks.ctr.pep import PEP_BUDGETS, THRESHOLD_INIT, PEPMask, search_mask

log = logging.getLogger(__name__)

DEFAULT_FIELDS = {"movielens1m": ML_FIELDS, "criteo": CRITEO_FIELDS}
DEFAULT_TRANSFER = {"movielens1m": ["zip"], "criteo": "auto:100"}
EVAL_PROTOCOLS = ("global", "pep")


def _to_device(array: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Copy a (memory-mapped) array to `device` in chunks, never holding two host copies."""
    out = torch.empty(array.shape, dtype=dtype, device=device)
    step = max(1, (1 << 26) // max(1, array[:1].nbytes))
    for start in range(0, array.shape[0], step):
        chunk = np.array(array[start : start + step])  # a writable host copy of one chunk
        out[start : start + step] = torch.from_numpy(chunk).to(device=device, dtype=dtype)
    return out


def _state_digest(model: nn.Module) -> str:
    """sha256 of the model's initial parameters and buffers (ties cached masks to an init)."""
    sha = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


class CTRTask(Task):
    """CTR prediction on MovieLens-1M or Criteo (see the module docstring).

    Args:
        model: callable(num_items=, num_fields=) -> a tasks.ctr.models.CTRModel (a Hydra partial).
        dataset: "movielens1m" or "criteo".
        data_dir: the data folder (default $HARMLESS_DATA_DIR).
        cache_dir: cache root for preprocessed data and PEP masks (default ~/.cache/harmless).
        fields: fields to use, in column order (default: all of the dataset's).
        transfer_fields: fields whose values the transfer acts on, or "auto:N" (every field with
            more than N values); default ["zip"] (MovieLens-1M), "auto:100" (Criteo).
        batch_size: training batch size (PEP: 1024).
        split_seed: seed of the 80/10/10 split.
        budget: PEP's number of non-zero embedding parameters, or None (no pruning).
        ema_decay: decay of the weights' exponential moving average, or None (no EMA).
        eval_protocol: "global" or "pep" (adds PEP's per-batch mean AUC as "auc_pep").
        max_rows: read only the first max_rows lines of the source file (smoke runs).
        ratings_file: MovieLens-1M ratings file inside movielens-1m/.
        criteo_path: the Criteo TSV, relative to data_dir unless absolute.
        min_count: Criteo's rare-value threshold (values seen fewer times in training -> OOV).
        head_fraction: share of each transferred field's values counted as head in evaluation.
        eval_batch_size: rows per forward pass in evaluation.
        pep: options of PEP's search (tasks.ctr.pep.search_masks): granularity,
            threshold_init (default per dataset), lr, weight_decay, grad_clip, max_epochs.
    """

    monitor = "auc"
    monitor_mode = "max"

    def __init__(
        self,
        model: Callable[..., nn.Module],
        dataset: str = "movielens1m",
        data_dir: str | None = None,
        cache_dir: str | None = None,
        fields: Sequence[str] | None = None,
        transfer_fields: Sequence[str] | str | None = None,
        batch_size: int = 1024,
        split_seed: int = 0,
        budget: int | None = None,
        ema_decay: float | None = None,
        eval_protocol: str = "global",
        max_rows: int | None = None,
        ratings_file: str = "ratings.dat",
        criteo_path: str = "criteo/train.txt",
        min_count: int = 10,
        head_fraction: float = 0.2,
        eval_batch_size: int = 8192,
        pep: dict[str, Any] | None = None,
    ) -> None:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; allowed: {list(DATASETS)}")
        if eval_protocol not in EVAL_PROTOCOLS:
            raise ValueError(
                f"eval_protocol must be one of {EVAL_PROTOCOLS}, got {eval_protocol!r}"
            )
        if budget is not None and int(budget) <= 0:
            raise ValueError(f"budget must be a positive number of parameters, got {budget}")
        if ema_decay is not None and not 0.0 < float(ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        if int(batch_size) <= 0 or int(eval_batch_size) <= 0:
            raise ValueError("batch_size and eval_batch_size must be positive")
        self.model_factory = model
        self.dataset = dataset
        self.data_dir, self.cache_dir = data_dir, cache_dir
        self.fields = tuple(fields) if fields is not None else DEFAULT_FIELDS[dataset]
        transfer = DEFAULT_TRANSFER[dataset] if transfer_fields is None else transfer_fields
        self.transfer_spec = [transfer] if isinstance(transfer, str) else list(transfer)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.split_seed = int(split_seed)
        self.budget = None if budget is None else int(budget)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.eval_protocol = eval_protocol
        self.max_rows = max_rows
        self.ratings_file, self.criteo_path = ratings_file, criteo_path
        self.min_count = int(min_count)
        self.head_fraction = float(head_fraction)
        self.pep_options = dict(pep or {})
        self.pep_options.setdefault("threshold_init", THRESHOLD_INIT[dataset])
        self.pep_options.setdefault("batch_size", self.batch_size)
        self.pep_mask: PEPMask | None = None
        self.best_test_pep = float("-inf")  # PEP's protocol: best test auc_pep so far

    # ------------------------------------------------------------------------------ setup

    def _load(self) -> CTRData:
        options: dict[str, Any] = {
            "fields": self.fields,
            "split_seed": self.split_seed,
            "max_rows": self.max_rows,
        }
        if self.dataset == "movielens1m":
            options["ratings_file"] = self.ratings_file
        else:
            options.update(path=self.criteo_path, min_count=self.min_count)
        return load_dataset(self.dataset, self.data_dir, self.cache_dir, **options)

    def _resolve_transfer(self, data: CTRData) -> list[str]:
        names: list[str] = []
        for spec in self.transfer_spec:
            if spec.startswith("auto:"):
                least = int(spec.split(":", 1)[1])
                names += [f for f, n in zip(data.fields, data.field_sizes) if n > least]
            elif spec in data.fields:
                names.append(spec)
            else:
                raise ValueError(
                    f"transfer field {spec!r} is not among the fields {list(data.fields)}"
                )
        names = list(dict.fromkeys(names))
        if not names:
            log.warning(
                "no field matches transfer_fields %s: no table to transfer on", self.transfer_spec
            )
        return names

    def _domains(self) -> None:
        """Head (20% most frequent training values) and tail values of each transferred field,
        and the evaluation rows holding them."""
        data, counts = self.data, self.counts
        self.head_values, self.tail_values = {}, {}
        is_head = np.zeros(data.num_items, dtype=bool)
        is_tail = np.zeros(data.num_items, dtype=bool)
        for name in self.transfer:
            oov = data.oov[data.column(name)]
            rough = split_by_frequency(
                counts,
                "top_fraction",
                self.head_fraction,
                items=data.field_ids(name),
                exclude=() if oov is None else (oov,),
            )
            self.head_values[name], self.tail_values[name] = rough.source, rough.target
            is_head[rough.source] = True
            is_tail[rough.target] = True
        self.head_rows, self.tail_rows = {}, {}
        cols = [data.column(f) for f in self.transfer]
        for split in ("valid", "test"):
            values = np.asarray(data.x[split][:, cols])  # [rows, transferred fields]
            self.head_rows[split] = is_head[values].all(axis=1) if cols else None
            self.tail_rows[split] = is_tail[values].any(axis=1) if cols else None

    def setup(self, device: torch.device, seed: int) -> None:
        self.device = torch.device(device)
        self.seed = int(seed)
        self.data = data = self._load()
        self.transfer = self._resolve_transfer(data)
        self.transfer_cols = [(f, data.column(f)) for f in self.transfer]
        self.train_records = data.x["train"]  # numpy (memory map): counts, co-occurrence
        self.counts = np.bincount(
            np.asarray(self.train_records).ravel(), minlength=data.num_items
        ).astype(np.int64)
        self.x = {s: _to_device(data.x[s], self.device, torch.int32) for s in SPLITS}
        self.y = {s: _to_device(data.y[s], self.device, torch.float32) for s in SPLITS}
        self.labels = {s: np.asarray(data.y[s]) for s in SPLITS}
        self._domains()
        self.pep_order = {
            s: np.random.default_rng(self.split_seed).permutation(data.rows(s))
            for s in ("valid", "test")
        }
        torch.manual_seed(self.seed)
        model = self.model_factory(num_items=data.num_items, num_fields=data.num_fields)
        if not isinstance(model, CTRModel):
            raise TypeError(f"model must build a tasks.ctr.models.CTRModel, got {type(model)}")
        init_digest = _state_digest(model)
        self.model = model.to(self.device)
        if self.budget is not None:
            self.pep_mask = self._search(init_digest)
            self.model.set_mask(self.pep_mask.mask)
        self.ema = None
        if self.ema_decay is not None:
            self.ema = [p.detach().clone() for p in self.model.parameters()]
        log.info("CTR task ready: %s", self.describe())

    def _search(self, init_digest: str) -> PEPMask:
        key = {
            "data": self.data.path.name,  # digest of dataset, fields, split seed, source files
            "model": type(self.model).__name__,
            "arch": repr(self.model),
            "dim": self.model.embed_dim,
            "init": init_digest,
        }
        return search_mask(
            self.model,
            self.x["train"],
            self.y["train"],
            self.budget,
            seed=self.seed,
            cache_dir=self.cache_dir,
            cache_key=key,
            also=PEP_BUDGETS[self.dataset],
            **self.pep_options,
        )

    # ------------------------------------------------------------------------------ Task API

    def tables(self) -> dict[str, TableInfo]:
        weight = self.model.embedding.weight
        records, num_items = self.train_records, self.data.num_items

        def cooccurrence(anchors: np.ndarray):
            return record_cooccurrence(records, anchors, num_items)

        tables = {}
        for name in self.transfer:
            oov = self.data.oov[self.data.column(name)]
            tables[name] = TableInfo(
                weight=weight,
                counts=self.counts,
                cooccurrence=cooccurrence,
                items=self.data.field_ids(name),
                exclude=() if oov is None else (oov,),
            )
        return tables

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]:
        x, y = self.x["train"], self.y["train"]
        order = torch.randperm(x.shape[0], generator=generator, device=generator.device)
        order = order.to(self.device)
        for start in range(0, x.shape[0], self.batch_size):
            rows = order[start : start + self.batch_size]
            yield x[rows], y[rows]

    def train_loss(self, batch: Any) -> StepOutput:
        x, y = batch
        self.model.train()
        ids = x.long()  # [B, F]
        logits = self.model(ids)  # [B]
        loss = F.binary_cross_entropy_with_logits(logits, y)
        return StepOutput(
            loss=loss,
            ids={name: ids[:, col] for name, col in self.transfer_cols},
            num_examples=int(ids.shape[0]),
        )

    @torch.no_grad()
    def predict(self, split: str) -> np.ndarray:
        """Logits of every row of `split` (eval mode), float64 [rows]."""
        self.model.eval()
        x = self.x[split]
        out = [
            self.model(x[i : i + self.eval_batch_size].long()).float().cpu()
            for i in range(0, x.shape[0], self.eval_batch_size)
        ]
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def evaluate(self, split: str) -> dict[str, float]:
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        logits = self.predict(split)
        metrics = ctr_metrics(
            self.labels[split],
            logits,
            head=self.head_rows[split],
            tail=self.tail_rows[split],
            pep_order=self.pep_order[split] if self.eval_protocol == "pep" else None,
        )
        metrics.setdefault("auc_head", float("nan"))
        metrics.setdefault("auc_tail", float("nan"))
        if split == "test" and "auc_pep" in metrics:
            self.best_test_pep = max(self.best_test_pep, metrics["auc_pep"])
            metrics["auc_pep_best"] = self.best_test_pep
        return metrics

    @torch.no_grad()
    def after_step(self) -> None:
        mask = self.model.embedding.mask
        if mask is not None:
            self.model.embedding.weight.mul_(mask)  # the transfer gradient may touch pruned entries
        if self.ema is not None:
            params = [p.detach() for p in self.model.parameters()]
            torch._foreach_lerp_(self.ema, params, 1.0 - self.ema_decay)

    @contextlib.contextmanager
    def eval_weights(self) -> Iterator[None]:
        if self.ema is None:
            yield
            return
        params = list(self.model.parameters())
        backup = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, avg in zip(params, self.ema):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(params, backup):
                    p.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best_test_pep": self.best_test_pep}
        if self.ema is not None:
            state["ema"] = [t.detach().cpu() for t in self.ema]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_test_pep = float(state.get("best_test_pep", float("-inf")))
        if self.ema is not None and "ema" in state:
            with torch.no_grad():
                for avg, saved in zip(self.ema, state["ema"]):
                    avg.copy_(saved)

    def describe(self) -> dict[str, Any]:
        if not hasattr(self, "model"):
            raise RuntimeError("describe() needs setup() first")
        data = self.data
        facts: dict[str, Any] = {
            "dataset": self.dataset,
            "cache": str(Path(data.path)),
            "rows": {s: data.rows(s) for s in SPLITS},
            "positive_rate": {s: float(np.mean(self.labels[s])) for s in SPLITS},
            "values_per_field": dict(zip(data.fields, data.field_sizes.tolist())),
            "num_items": data.num_items,
            "transfer_fields": list(self.transfer),
            "head_tail_values": {
                f: [int(self.head_values[f].size), int(self.tail_values[f].size)]
                for f in self.transfer
            },
            "preprocess_seconds": data.meta.get("preprocess_seconds"),
            "model_params": sum(p.numel() for p in self.model.parameters()),
            "embedding_params": int(self.model.embedding.weight.numel()),
            "nonzero_embedding_params": self.model.nonzero_embedding_params(),
        }
        if self.pep_mask is not None:
            facts["pep"] = {
                "budget": self.pep_mask.budget,
                "count": self.pep_mask.count,
                "search_step": self.pep_mask.step,
                "search_epoch": self.pep_mask.epoch,
            }
        return facts
