"""Masks and unstructured magnitude pruning: layer-wise, global and the random-mask control.

Pruning is pure: it takes weights and a CPU mask and returns a new CPU mask. Each call prunes a fraction
of the weights still alive; the count is `round(rate * alive)` (Python's rounding, as
torch.nn.utils.prune), and ties in magnitude go to the lower flat index, layer by layer in
parameter order for global pruning.
"""

from __future__ import annotations

import torch
from torch import nn

from lthutils.config import ConfigError
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


def layer_rates(model: nn.Module, mask: Mask, fc: float, conv: float, output: float) -> dict[str, float]:
    """The per-round prune rate of each mask entry, by the kind of layer it belongs to."""
    kinds = layer_kinds(model)
    rate_of = {"fc": fc, "conv": conv, "output": output}
    return {name: rate_of[kinds[name.rsplit(".", 1)[0]]] for name in mask}


def _magnitudes(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().flatten().float().cpu()


def _smallest_alive(scores: torch.Tensor, alive: torch.Tensor, count: int) -> torch.Tensor:
    """Flat indices of the `count` smallest scores among alive entries, lower index first on ties."""
    keyed = torch.where(alive.bool(), scores, torch.full_like(scores, float("inf")))
    return torch.sort(keyed, stable=True).indices[:count]


def prune_layerwise(weights: dict[str, torch.Tensor], mask: Mask, rates: dict[str, float]) -> Mask:
    """Each entry loses round(rate * alive) of its alive weights, smallest magnitude first."""
    new = {}
    for name, m in mask.items():
        flat = m.flatten().clone()
        flat[_smallest_alive(_magnitudes(weights[name]), flat, round(rates[name] * int(flat.sum())))] = 0
        new[name] = flat.view_as(m)
    return Mask(new)


def prune_global(weights: dict[str, torch.Tensor], mask: Mask, rate: float) -> Mask:
    """One magnitude threshold across all entries: round(rate * alive) weights go in total."""
    names = list(mask)
    scores = torch.cat([_magnitudes(weights[n]) for n in names])
    flat = torch.cat([mask[n].flatten() for n in names])
    flat[_smallest_alive(scores, flat, round(rate * int(flat.sum())))] = 0
    pieces = flat.split([mask[n].numel() for n in names])
    return Mask({n: piece.view_as(mask[n]) for n, piece in zip(names, pieces)})


def magnitude_mask(mask: Mask, weights: dict[str, torch.Tensor]) -> Mask:
    """A mask with the same number alive in each entry as `mask`, keeping the entry's largest
    |weights| (lower index first on ties): with theta_0, magnitude pruning at initialization."""
    new = {}
    for name, m in mask.items():
        flat = torch.zeros(m.numel())
        order = torch.sort(_magnitudes(weights[name]), descending=True, stable=True).indices
        flat[order[: int(m.sum())]] = 1
        new[name] = flat.view_as(m)
    return Mask(new)


def random_mask(mask: Mask, generator: torch.Generator) -> Mask:
    """A mask with the same number alive in each entry, at positions drawn from `generator`."""
    new = {}
    for name, m in mask.items():
        flat = torch.zeros(m.numel())
        flat[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = 1
        new[name] = flat.view_as(m)
    return Mask(new)
