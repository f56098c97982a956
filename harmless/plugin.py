"""The plug-in: harmless transfer as a drop-in replacement for `loss.backward()`.

    harmless = HarmlessTransfer(model.embedding, FRAGE(dim=64), domains, mode="lexico")
    ...
    optimizer.zero_grad()
    stats = harmless.backward(loss, ids=batch_ids)   # instead of loss.backward()
    optimizer.step()

After `backward`, every parameter's `.grad` holds the update direction of the chosen mode, so any
`torch.optim` optimizer, gradient clipping and schedulers work unchanged (clip after `backward`:
clipping then acts on the combined gradient). Network weights keep the main gradient alone. For
each registered embedding table, each row i with a main or a transfer gradient gets

    none        g_m,i                         (plain training)
    fixed       g_m,i + lambda g_t,i          (Eq. 1, the earlier transfer methods)
    lexico      g_t,i + lambda_i g_m,i        (Algorithm 1, lambda_i from the item-wise barrier)
    lexico-global  g_t,i + lambda g_m,i       (Eq. 5-7: one lambda from all parameters' gradients)
    scale-only  lambda_i g_m,i                (Algorithm 1 with g_t = 0: the rescaling alone)

The transfer gradient g_t is taken with respect to the gathered target rows only (no backward pass
through the network), so the extra memory is O(rows x dim) for the rows touched in the step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from harmless.lexico import lambda_from_products
from harmless.losses.base import TransferLoss

log = logging.getLogger(__name__)

MODES = ("none", "fixed", "lexico", "lexico-global", "scale-only")
SCOPES = ("batch", "all")


@dataclass
class _Table:
    """One embedding table with its transfer loss and its domains (ids as long tensors)."""

    name: str
    weight: nn.Parameter
    loss: TransferLoss | None
    source: torch.Tensor
    target: torch.Tensor
    target_mask: torch.Tensor = field(repr=False)
    items: torch.Tensor | None = None  # the rows this entry governs (None: every row)


@dataclass
class _TableStep:
    """One table's step: its main-gradient rows and the transfer gradient of its target rows.

    For a dense gradient `main` is the whole [V, d] gradient (unscaled, fp32; the `.grad` itself
    when no conversion is needed, so the combination runs in place); for a sparse gradient it
    holds the rows listed in `rows`. `t_pos` indexes the rows of `main` that got a transfer
    gradient `g_t` ([k, d]); `sq` and `inner` are ||g_m,i||^2 and <g_t,i, g_m,i> per row of `main`.
    """

    main: torch.Tensor  # [n, d]
    rows: torch.Tensor | None  # [n] row ids for a sparse gradient; None: all rows (dense)
    t_pos: torch.Tensor  # [k]
    g_t: torch.Tensor  # [k, d]
    sq: torch.Tensor  # [n]
    inner: torch.Tensor  # [n]
    transfer_loss: float | None
    aux: dict[str, float]


def _as_parameter(table: nn.Parameter | nn.Embedding | nn.Module, name: str) -> nn.Parameter:
    weight = table.weight if isinstance(table, nn.Module) else table
    if not isinstance(weight, nn.Parameter) or weight.dim() != 2:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"table '{name}' must be a 2-D parameter or nn.Embedding, got {shape}")
    return weight


def _ids(values, num_rows: int, what: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        ids = values.detach().to("cpu", torch.long).reshape(-1)
    else:
        ids = torch.as_tensor(np.array(values, dtype=np.int64)).reshape(-1)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_rows):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise ValueError(f"{what} holds id {bad}, outside the table of {num_rows} rows")
    return torch.unique(ids)


class HarmlessTransfer:
    """Combine the main loss with transfer losses on embedding tables, per Algorithm 1.

    Args:
        tables: an embedding (nn.Embedding or 2-D parameter), or a name -> embedding mapping
            (several CTR fields, say). Tied input/output embeddings are one table.
        losses: the transfer loss for each table (a TransferLoss, or a name -> loss mapping);
            a table mapped to None gets the main gradient alone, unless mode is scale-only.
        domains: for each table, an object with `source` and `target` id arrays
            (`harmless.domains.Domains`, after selection if wanted).
        mode: one of none, fixed, lexico, lexico-global, scale-only.
        lam: the fixed coefficient of mode "fixed" (Eq. 1).
        alpha: the barrier's coefficient (the paper uses 2).
        scope: "batch" puts the transfer loss on the target rows present in the batch (the `ids`
            given to `backward`, or the rows with a main gradient); "all" on every target row.
        source_sample: source rows drawn (without replacement) each step as the reference sample;
            None uses every source row.
        target_sample: cap on the target rows per step (a random subset); None keeps them all.
        parameters: all the model's parameters; needed by mode lexico-global, whose lambda uses
            the norm of the whole main gradient.
        seed: seed of the plug-in's own generator, so sampling never touches the global RNG and
            runs of different modes share dropout masks and batch order within one seed.
        items: for each table, the row ids it governs (default: all rows). Several entries may
            share one weight (the fields of one CTR table) when their items are disjoint; rows
            outside every entry's items keep their plain main gradient.
    """

    def __init__(
        self,
        tables: nn.Module | nn.Parameter | Mapping[str, nn.Module | nn.Parameter],
        losses: TransferLoss | Mapping[str, TransferLoss | None] | None,
        domains=None,
        mode: str = "lexico",
        lam: float = 1e-2,
        alpha: float = 2.0,
        scope: str = "batch",
        source_sample: int | None = 1024,
        target_sample: int | None = None,
        parameters: Iterable[nn.Parameter] | None = None,
        seed: int = 0,
        items: torch.Tensor | np.ndarray | Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode '{mode}'; allowed: {', '.join(MODES)}")
        if scope not in SCOPES:
            raise ValueError(f"unknown scope '{scope}'; allowed: {', '.join(SCOPES)}")
        if mode == "lexico-global" and parameters is None:
            raise ValueError("mode 'lexico-global' needs parameters=model.parameters()")
        self.mode, self.lam, self.alpha, self.scope = mode, float(lam), float(alpha), scope
        self.source_sample, self.target_sample = source_sample, target_sample
        self.parameters = list(parameters) if parameters is not None else None
        self.generator = torch.Generator().manual_seed(seed)
        self.tables = self._build_tables(tables, losses, domains, items)

    # ----------------------------------------------------------------------------- setup

    def _build_tables(self, tables, losses, domains, items) -> list[_Table]:
        if not isinstance(tables, Mapping):
            tables, losses, domains, items = (
                {"embedding": tables},
                {"embedding": losses},
                {"embedding": domains},
                {"embedding": items},
            )
        if not isinstance(losses, Mapping):
            losses = dict.fromkeys(tables, losses)
        if domains is not None and not isinstance(domains, Mapping):
            domains = dict.fromkeys(tables, domains)
        built = []
        for name, table in tables.items():
            weight = _as_parameter(table, name)
            loss, dom = losses.get(name), (domains or {}).get(name)
            if loss is not None and dom is None:
                raise ValueError(f"table '{name}' has a transfer loss but no domains")
            num_rows = weight.shape[0]
            source = _ids(dom.source, num_rows, f"source of '{name}'") if dom else _ids([], 1, "")
            target = _ids(dom.target, num_rows, f"target of '{name}'") if dom else _ids([], 1, "")
            if loss is not None and target.numel() == 0:
                raise ValueError(
                    f"table '{name}' has an empty target domain: lower the selection quantile "
                    "or the source fraction, or register no loss for it"
                )
            if loss is not None and loss.uses_source and source.numel() == 0:
                raise ValueError(f"table '{name}' has an empty source domain for its loss")
            own = (items or {}).get(name)
            own = None if own is None else _ids(own, num_rows, f"items of '{name}'")
            if own is not None and not torch.isin(torch.cat([source, target]), own).all():
                raise ValueError(f"the domains of '{name}' reach rows outside its items")
            mask = torch.zeros(num_rows, dtype=torch.bool)
            mask[target] = True
            built.append(_Table(name, weight, loss, source, target, mask, own))
        self._check_shared(built)
        return built

    @staticmethod
    def _check_shared(built: list[_Table]) -> None:
        """Entries that share one weight must each govern their own rows (`items`)."""
        by_weight: dict[int, list[_Table]] = {}
        for table in built:
            by_weight.setdefault(id(table.weight), []).append(table)
        for group in by_weight.values():
            if len(group) == 1:
                continue
            names = [t.name for t in group]
            if any(t.items is None for t in group):
                raise ValueError(f"tables {names} share one weight: give each its items=")
            rows = torch.cat([t.items for t in group])
            if rows.numel() != torch.unique(rows).numel():
                raise ValueError(f"tables {names} share one weight and their items overlap")

    # ----------------------------------------------------------------------------- step

    def backward(
        self,
        main_loss: torch.Tensor,
        ids: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> dict[str, float]:
        """Backpropagate the main loss, then rewrite the tables' gradients; returns diagnostics.

        `ids` are the item ids of the batch (a tensor, or one per table name); they decide which
        target rows the transfer loss sees under scope "batch". With a GradScaler, pass it: the
        loss is scaled for the backward pass and the combination runs on unscaled fp32 values.
        """
        if main_loss.numel() != 1:
            raise ValueError(f"main_loss must be a scalar, got shape {tuple(main_loss.shape)}")
        if not torch.isfinite(main_loss.detach()):
            raise FloatingPointError(f"the main loss is not finite: {main_loss.item()}")
        scale = 1.0
        if scaler is not None and scaler.is_enabled():
            scaler.scale(main_loss).backward()
            scale = float(scaler.get_scale())
        else:
            main_loss.backward()
        if self.mode == "none":
            return {}
        loss_value = self._reduced_loss(main_loss)
        if not isinstance(ids, Mapping):
            ids = dict.fromkeys((t.name for t in self.tables), ids)
        active = [t for t in self.tables if t.loss is not None or self.mode == "scale-only"]
        steps = {t.name: self._prepare(t, ids.get(t.name), scale) for t in active}
        lam_global = self._global_lambda(active, steps, loss_value, scale)
        stats = _Stats()
        for table in active:
            step = steps[table.name]
            lam = self._combine(step, loss_value, lam_global)
            self._write(table.weight, step, scale)
            stats.add(table.name, step, lam)
        return stats.result(self.mode)

    def _reduced_loss(self, main_loss: torch.Tensor) -> torch.Tensor:
        """The main loss averaged over ranks, so every rank computes the same barrier."""
        value = main_loss.detach().float().reshape(())
        if dist.is_available() and dist.is_initialized():
            value = value.clone()
            dist.all_reduce(value)
            value /= dist.get_world_size()
        return value

    def _batch_rows(self, table: _Table, ids, main_rows: torch.Tensor) -> torch.Tensor:
        """Rows of the batch: the given ids (united over ranks), else the rows with a main grad."""
        if ids is None:
            return main_rows
        num_rows = table.weight.shape[0]
        rows = _ids(ids.detach().cpu() if isinstance(ids, torch.Tensor) else ids, num_rows, "ids")
        if dist.is_available() and dist.is_initialized():
            present = torch.zeros(num_rows, device=table.weight.device)
            present[rows.to(present.device)] = 1.0
            dist.all_reduce(present, op=dist.ReduceOp.MAX)
            rows = present.nonzero().squeeze(1).cpu()
        return rows

    def _sample(self, ids: torch.Tensor, k: int | None) -> torch.Tensor:
        if k is None or ids.numel() <= k:
            return ids
        pick = torch.randperm(ids.numel(), generator=self.generator)[:k]
        return ids[pick].sort().values

    @staticmethod
    def _gather_main(grad: torch.Tensor, items: torch.Tensor | None):
        """Row ids (sorted, on the CPU) with a non-zero main gradient, and those rows' values."""
        if grad.is_sparse:
            grad = grad.coalesce()
            rows, values = grad.indices()[0].cpu(), grad.values()
            if items is not None:
                keep = torch.isin(rows, items)
                rows, values = rows[keep], values[keep.to(values.device)]
            return rows, values
        values = grad[items.to(grad.device)]
        nonzero = values.ne(0).any(dim=1)
        return items[nonzero.cpu()], values[nonzero]

    def _transfer_rows(self, table: _Table, ids, main_rows: torch.Tensor) -> torch.Tensor:
        if table.loss is None or self.mode == "scale-only":
            return torch.empty(0, dtype=torch.long)
        if self.scope == "all":
            rows = table.target
        else:
            batch = self._batch_rows(table, ids, main_rows)
            rows = batch[table.target_mask[batch]]
        return self._sample(rows, self.target_sample)

    def _prepare(self, table: _Table, ids, scale: float) -> _TableStep:
        """Gather the main gradient, find the transfer rows and differentiate the transfer loss.

        A dense gradient of a table that governs all its rows is combined in place; a sparse
        gradient, or an entry restricted to `items` (one CTR field of a shared table), is
        gathered into the rows it touches.
        """
        weight = table.weight
        dev = weight.device
        grad = weight.grad if weight.grad is not None else torch.zeros_like(weight)
        if not grad.is_sparse and table.items is None:
            main = grad if grad.dtype == torch.float32 and scale == 1.0 else grad.float() / scale
            sq = torch.linalg.vector_norm(main, dim=1).square()
            main_rows = (sq > 0).nonzero().squeeze(1).cpu()
            t_rows = self._transfer_rows(table, ids, main_rows)
            rows, t_pos = None, t_rows.to(dev)
        else:
            main_rows, values = self._gather_main(grad, table.items)
            t_rows = self._transfer_rows(table, ids, main_rows)
            rows = torch.unique(torch.cat([main_rows, t_rows]))  # sorted
            main = torch.zeros(rows.numel(), weight.shape[1], device=dev)
            main[torch.searchsorted(rows, main_rows).to(dev)] = values.float() / scale
            sq = torch.linalg.vector_norm(main, dim=1).square()
            t_pos = torch.searchsorted(rows, t_rows).to(dev)
        inner = torch.zeros_like(sq)
        g_t, loss_value, aux = main.new_zeros(0, weight.shape[1]), None, {}
        if t_rows.numel():
            g_t, loss_value, aux = self._transfer_grad(table, t_rows)
            inner[t_pos] = (g_t * main[t_pos]).sum(dim=1)
        return _TableStep(main, rows, t_pos, g_t, sq, inner, loss_value, aux)

    def _transfer_grad(self, table: _Table, t_rows: torch.Tensor):
        """d l_transfer / d e_t for the gathered target rows; the source rows are constants."""
        weight, loss = table.weight, table.loss
        dev = weight.device
        target = weight.detach()[t_rows.to(dev)].float()
        source = target.new_empty(0, target.shape[1])
        if loss.uses_source:
            s_rows = self._sample(table.source, self.source_sample)
            source = weight.detach()[s_rows.to(dev)].float()
        aux = loss.auxiliary_step(source, target)
        target.requires_grad_(True)
        with torch.enable_grad():
            value = loss(source, target)
            (g_rows,) = torch.autograd.grad(value, target)
        if not torch.isfinite(value):
            raise FloatingPointError(f"transfer loss of table '{table.name}' is {value.item()}")
        return g_rows, float(value.detach()), aux

    def _global_lambda(self, active, steps: dict[str, _TableStep], loss_value, scale: float):
        """Eq. 7 over all parameters: ||g_m||^2 and <g_t, g_m> summed over every tensor."""
        if self.mode != "lexico-global":
            return None
        sq = sum(step.sq.double().sum() for step in steps.values())
        inner = sum(step.inner.double().sum() for step in steps.values())
        table_ids = {id(t.weight) for t in active}
        for p in self.parameters:
            if id(p) not in table_ids and p.grad is not None:
                grad = p.grad.coalesce().values() if p.grad.is_sparse else p.grad
                sq = sq + (grad.double() / scale).square().sum()
        lam = lambda_from_products(sq.reshape(1), inner.reshape(1), loss_value, self.alpha)
        return lam[0].float()

    def _combine(self, step: _TableStep, loss_value, lam_global) -> torch.Tensor | None:
        """Overwrite `step.main` with the update of the mode; returns the lambdas used."""
        main, t_pos = step.main, step.t_pos
        # t_pos holds distinct rows: a gather-add-scatter is several times faster on the CPU
        # than index_add_.
        if self.mode == "fixed":
            main[t_pos] += self.lam * step.g_t
            return None
        if self.mode == "lexico-global":
            lam = lam_global.to(main.device).expand(main.shape[0])
        else:  # lexico and scale-only (whose inner products are all zero)
            lam = lambda_from_products(step.sq, step.inner, loss_value, self.alpha)
        # Rows without a main gradient are zero: when they are most of the table (a dense
        # gradient of a large table, few rows in the batch), rescale the others alone.
        touched = (step.sq > 0).nonzero().squeeze(1)
        if touched.numel() < main.shape[0] // 2:
            main[touched] *= lam[touched].unsqueeze(1)
        else:
            main.mul_(lam.unsqueeze(1))
        main[t_pos] += step.g_t
        return lam

    @staticmethod
    def _write(weight: nn.Parameter, step: _TableStep, scale: float) -> None:
        """Put the combined rows back into `.grad`, dense or sparse, in the weight's dtype.

        A sparse gradient keeps the rows that other entries of the same weight govern.
        """
        values = (step.main if scale == 1.0 else step.main * scale).to(weight.dtype)
        grad = weight.grad
        if step.rows is None:
            if grad is None:
                weight.grad = values
            elif values is not grad:
                grad.copy_(values)
            return
        rows = step.rows.to(weight.device)
        if grad is None or not grad.is_sparse:
            if grad is None:
                weight.grad = grad = torch.zeros_like(weight)
            grad[rows] = values
            return
        grad = grad.coalesce()
        old_rows, old_values = grad.indices()[0], grad.values()
        all_rows = torch.unique(torch.cat([old_rows, rows]))
        merged = old_values.new_zeros(all_rows.numel(), weight.shape[1])
        merged[torch.searchsorted(all_rows, old_rows)] = old_values
        merged[torch.searchsorted(all_rows, rows)] = values
        weight.grad = torch.sparse_coo_tensor(
            all_rows.unsqueeze(0), merged, weight.shape, is_coalesced=True, check_invariants=False
        )

    # ----------------------------------------------------------------------------- extras

    @torch.no_grad()
    def transfer_value(self) -> dict[str, float]:
        """Each table's transfer loss over all its target rows (for evaluation curves)."""
        values = {}
        for table in self.tables:
            if table.loss is None:
                continue
            weight = table.weight.detach()
            target = weight[table.target.to(weight.device)].float()
            source = target.new_empty(0, target.shape[1])
            if table.loss.uses_source:
                source = weight[table.source.to(weight.device)].float()
            values[table.name] = float(table.loss(source, target))
        return values

    def state_dict(self) -> dict:
        """The generator state and each loss's state (the FRAGE discriminator, say)."""
        return {
            "generator": self.generator.get_state(),
            "losses": {t.name: t.loss.state_dict() for t in self.tables if t.loss is not None},
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        for table in self.tables:
            if table.loss is not None:
                table.loss.load_state_dict(state["losses"][table.name])

    def to(self, device: torch.device | str) -> HarmlessTransfer:
        """Move the losses' own parameters (discriminators) to `device`."""
        for table in self.tables:
            if table.loss is not None:
                table.loss.to(device)
        return self


class _Stats:
    """Per-step diagnostics accumulated over tables, reduced to a small dict of floats. A loss's
    own statistics (FRAGE's disc_acc, disc_loss) are averaged over the tables; with several
    tables each one's value is kept too, as `disc_acc/<table>`."""

    def __init__(self) -> None:
        self.transfer_loss: float | None = None
        self.lams: list[torch.Tensor] = []
        self.cosines: list[torch.Tensor] = []
        self.main_rows = self.transfer_rows = self.rescaled_only = 0
        self.aux: dict[str, dict[str, float]] = {}  # loss statistic -> table name -> value

    def add(self, name: str, step: _TableStep, lam: torch.Tensor | None) -> None:
        has_main = step.sq > 0
        n_main = int(has_main.sum())
        both = has_main[step.t_pos]
        self.main_rows += n_main
        self.transfer_rows += step.t_pos.numel()
        self.rescaled_only += n_main - int(both.sum())
        if lam is not None:
            self.lams.append(lam[has_main])
        if both.any():
            sq_t = step.sq[step.t_pos][both]
            norm_t = torch.linalg.vector_norm(step.g_t[both], dim=1)
            cos = step.inner[step.t_pos][both] / (sq_t.sqrt() * norm_t).clamp_min(1e-30)
            self.cosines.append(cos)
        if step.transfer_loss is not None:
            self.transfer_loss = (self.transfer_loss or 0.0) + step.transfer_loss
        for key, value in step.aux.items():
            self.aux.setdefault(key, {})[name] = value

    def result(self, mode: str) -> dict[str, float]:
        out = {"rows/main": float(self.main_rows), "rows/transfer": float(self.transfer_rows)}
        if self.transfer_loss is not None:
            out["transfer_loss"] = self.transfer_loss
        if self.main_rows:
            out["rescaled_only"] = self.rescaled_only / self.main_rows
        lam = torch.cat(self.lams) if self.lams else torch.empty(0)
        if lam.numel() and mode != "fixed":
            out["barrier_active"] = float((lam > 0).float().mean())
            out["lambda_mean"] = float(lam.mean())
            out["lambda_max"] = float(lam.max())
        if self.cosines:
            out["grad_cos"] = float(torch.cat(self.cosines).mean())
        for key, by_table in self.aux.items():  # e.g. the discriminators' accuracy
            out[key] = sum(by_table.values()) / len(by_table)
            if len(by_table) > 1:
                out.update({f"{key}/{name}": value for name, value in by_table.items()})
        return out
