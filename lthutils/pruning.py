"""Masks and unstructured pruning: layer-wise, global, by mask criterion, and the control masks.

Pruning is pure: it takes weights and a CPU mask and returns a new CPU mask. Each call prunes a fraction
of the weights still alive; the count is `round(rate * alive)` (Python's rounding, as
torch.nn.utils.prune), and ties in magnitude go to the lower flat index, layer by layer in
parameter order for global pruning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lthutils.config import PRUNE_FUNCTIONS, ConfigError, prune_function
from lthutils.models import layer_kinds


class Mask(dict):
    """Parameter name -> float32 tensor of 0s and 1s (1 = weight alive)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__()
        for name, tensor in tensors.items():
            self[name] = tensor

    def __setitem__(self, name: str, tensor: torch.Tensor) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"mask entry {name} is a {type(tensor).__name__}, not a tensor")
        if name in self and tensor.shape != self[name].shape:
            raise ValueError(f"mask entry {name} has shape {tuple(tensor.shape)}, not {tuple(self[name].shape)}")
        values = tensor.float()
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError(f"mask entry {name} holds values other than 0 and 1")
        super().__setitem__(name, values)

    @classmethod
    def ones(cls, model: nn.Module, prune_biases: bool = False, prune_output: bool = True) -> Mask:
        """A dense mask over the model's prunable parameters."""
        prunable = prunable_parameters(model, prune_biases, prune_output)
        return cls({name: torch.ones_like(p) for name, p in prunable.items()})

    def to(self, device: torch.device) -> Mask:
        return Mask({name: m.to(device) for name, m in self.items()})

    def alive(self) -> dict[str, int]:
        return {name: int(m.sum()) for name, m in self.items()}

    def weights_remaining(self) -> float:
        """Fraction (0..1) of the masked parameters still alive."""
        return sum(self.alive().values()) / sum(m.numel() for m in self.values())

    def check_fits(self, model: nn.Module, what: str = "ticket") -> None:
        """Raise ConfigError unless every entry names a parameter of `model` of the same shape."""
        params = dict(model.named_parameters())
        for name, m in self.items():
            if name not in params or params[name].shape != m.shape:
                found = tuple(params[name].shape) if name in params else "no such parameter"
                raise ConfigError(
                    what, f"{name} of shape {tuple(m.shape)}", f"a mask that fits the model ({name}: {found})"
                )


def prunable_parameters(
    model: nn.Module, prune_biases: bool = False, prune_output: bool = True
) -> dict[str, torch.Tensor]:
    """Weights (and biases if asked) of the model's linear and conv layers (the output layer's
    only if asked), by name; never batch norm's."""
    kinds = layer_kinds(model)
    prunable = {}
    for name, p in model.named_parameters():
        kind = kinds.get(name.rsplit(".", 1)[0])
        if kind is None or (kind == "output" and not prune_output):
            continue  # batch norm, or an output layer left dense
        if name.endswith("weight") or prune_biases:
            prunable[name] = p
    return prunable


PruneFunction = Callable[[dict[str, torch.Tensor], "Mask", float], dict[str, torch.Tensor]]


def register_prune_function(name: str, function: PruneFunction) -> None:
    """Make `function(weights, mask, prune_rate) -> next mask` the config's prune_scope=`name`.
    It receives the trained weights and the current mask of every prunable tensor (CPU) and the
    fraction of alive weights to prune; it returns 0/1 tensors of the same names and shapes."""
    if name in ("layerwise", "global") or not name.isidentifier():
        raise ConfigError("prune function name", name, "an identifier other than layerwise and global")
    PRUNE_FUNCTIONS[name] = function


def prune_with(name: str, weights: dict[str, torch.Tensor], mask: Mask, rate: float) -> Mask:
    """The next mask of prune function `name` (see prune_function), refused with ConfigError
    unless it is 0/1 tensors of the mask's names and shapes that keep pruned weights pruned."""
    new = prune_function(name)(weights, Mask(dict(mask)), rate)

    def refuse(what: str) -> ConfigError:
        return ConfigError("prune_scope", name, f"a function returning {what}")

    if not isinstance(new, dict) or set(new) != set(mask):
        raise refuse(f"a mask over {sorted(mask)} (it returned {sorted(new) if isinstance(new, dict) else new!r})")
    for key, tensor in new.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != mask[key].shape:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise refuse(f"{key} of shape {tuple(mask[key].shape)} (it returned {got})")
    try:
        result = Mask({key: tensor.detach().cpu() for key, tensor in new.items()})
    except ValueError as error:
        raise refuse(f"a mask of 0s and 1s ({error})") from error
    if any(bool((result[key] > mask[key]).any()) for key in mask):
        raise refuse("a mask that keeps pruned weights pruned (it revived some)")
    return result


def layer_rates(model: nn.Module, mask: Mask, fc: float, conv: float, output: float) -> dict[str, float]:
    """The per-round prune rate of each mask entry, by the kind of layer it belongs to."""
    kinds = layer_kinds(model)
    rate_of = {"fc": fc, "conv": conv, "output": output}
    return {name: rate_of[kinds[name.rsplit(".", 1)[0]]] for name in mask}


def _magnitudes(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().flatten().float().cpu()


def _ranking(weights: dict[str, torch.Tensor], scores: dict[str, torch.Tensor] | None, name: str) -> torch.Tensor:
    """What an entry's weights are ranked by, larger kept: `scores` if given, else |weights|."""
    return _magnitudes(weights[name]) if scores is None else scores[name].detach().flatten().float().cpu()


def _smallest_alive(scores: torch.Tensor, alive: torch.Tensor, count: int) -> torch.Tensor:
    """Flat indices of the `count` smallest scores among alive entries, lower index first on ties."""
    keyed = torch.where(alive.bool(), scores, torch.full_like(scores, float("inf")))
    return torch.sort(keyed, stable=True).indices[:count]


def prune_layerwise(
    weights: dict[str, torch.Tensor],
    mask: Mask,
    rates: dict[str, float],
    scores: dict[str, torch.Tensor] | None = None,
) -> Mask:
    """Each entry loses round(rate * alive) of its alive weights, smallest magnitude (or score) first."""
    new = {}
    for name, m in mask.items():
        flat = m.flatten().clone()
        flat[_smallest_alive(_ranking(weights, scores, name), flat, round(rates[name] * int(flat.sum())))] = 0
        new[name] = flat.view_as(m)
    return Mask(new)


def prune_global(
    weights: dict[str, torch.Tensor], mask: Mask, rate: float, scores: dict[str, torch.Tensor] | None = None
) -> Mask:
    """One magnitude (or score) threshold across all entries: round(rate * alive) weights go in total."""
    names = list(mask)
    ranking = torch.cat([_ranking(weights, scores, n) for n in names])
    flat = torch.cat([mask[n].flatten() for n in names])
    flat[_smallest_alive(ranking, flat, round(rate * int(flat.sum())))] = 0
    pieces = flat.split([mask[n].numel() for n in names])
    return Mask({n: piece.view_as(mask[n]) for n, piece in zip(names, pieces)})


def criterion_scores(
    criterion: str, initial: dict[str, torch.Tensor], final: dict[str, torch.Tensor], mask: Mask
) -> dict[str, torch.Tensor] | None:
    """The scores (larger kept) of a mask criterion (config.MASK_CRITERIA) for each entry, from the
    weights a round started from and those it trained to; None for large_final (|final|, the
    pruning functions' default). large_init_large_final keeps weights large in both: the smaller of
    their two ranks within the entry's alive weights, so a threshold on it is one percentile on
    |w_i| and |w_f| at once (Zhou et al.'s quadrant) and counts stay exact."""
    if criterion == "large_final":
        return None
    scores = {}
    for name, m in mask.items():
        w_i, w_f = initial[name].detach().float().cpu(), final[name].detach().float().cpu()
        if criterion == "magnitude_increase":
            scores[name] = w_f.abs() - w_i.abs()
        elif criterion == "movement":
            scores[name] = (w_f - w_i).abs()
        else:
            alive = m.bool().flatten()
            ranks = [
                torch.where(alive, w.abs().flatten(), torch.tensor(-1.0)).argsort(stable=True).argsort()
                for w in (w_i, w_f)
            ]
            scores[name] = torch.minimum(*ranks).float().view_as(m)
    return scores


def keep_largest(scores: dict[str, torch.Tensor], counts: dict[str, int]) -> Mask:
    """A mask keeping each entry's `counts[name]` largest scores (lower index first on ties)."""
    return Mask({name: keep_largest_overall({name: scores[name]}, count)[name] for name, count in counts.items()})


def keep_largest_overall(scores: dict[str, torch.Tensor], total: int) -> Mask:
    """A mask keeping the `total` largest scores across all entries (lower index first on ties)."""
    names = list(scores)
    flat = torch.zeros(sum(scores[n].numel() for n in names))
    ranking = torch.cat([scores[n].detach().flatten().cpu() for n in names])
    flat[torch.sort(ranking, descending=True, stable=True).indices[:total]] = 1
    pieces = flat.split([scores[n].numel() for n in names])
    return Mask({n: piece.view_as(scores[n]) for n, piece in zip(names, pieces)})


def magnitude_mask(mask: Mask, weights: dict[str, torch.Tensor]) -> Mask:
    """A mask with the same number alive in each entry as `mask`, keeping the entry's largest
    |weights| (lower index first on ties): with theta_0, magnitude pruning at initialization."""
    return keep_largest({name: _magnitudes(weights[name]).view_as(m) for name, m in mask.items()}, mask.alive())


def random_mask(mask: Mask, generator: torch.Generator) -> Mask:
    """A mask with the same number alive in each entry, at positions drawn from `generator`."""
    new = {}
    for name, m in mask.items():
        flat = torch.zeros(m.numel())
        flat[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = 1
        new[name] = flat.view_as(m)
    return Mask(new)
