"""Pruning at initialization as controls: SNIP, GraSP and SynFlow masks (and magnitude's), scored at
the weights a ticket starts from, at the ticket's per-layer counts or its total count.

Scores are computed on the dense network (every mask entry alive) in evaluation mode, as
Synaptic-Flow's defaults do, on a fixed, seed-free sample of the training split: the first
SCORE_EXAMPLES_PER_CLASS examples of each class (Synaptic-Flow's prune_dataset_ratio of 10).
- snip: |w * dL/dw| (Lee et al. 2019), one gradient of the mean loss over the sample;
- grasp: w * Hg (Wang et al. 2020), g the gradient at temperature 200, Hg from the gradient of
  g . grad L; larger kept (removing the largest -w * Hg, as the paper prunes);
- synflow: |w * dR/dw| with R the sum of the outputs of the network with |w| on an all-ones input,
  in float64 (Tanaka et al. 2020), pruned in SYNFLOW_ITERATIONS steps on an exponential schedule,
  rescoring the pruned network each step;
- magnitude: |w|.
Inverted, each keeps the lowest scores instead (SynFlow at every step), the ablation of Frankle et
al. 2021 ("Pruning Neural Networks at Initialization: Why are We Missing the Mark?").
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from lthutils.data import Splits
from lthutils.pruning import Mask, keep_largest, keep_largest_overall

SCORE_EXAMPLES_PER_CLASS = 10
GRASP_TEMPERATURE = 200.0
SYNFLOW_ITERATIONS = 100
Scores = dict[str, torch.Tensor]  # parameter name -> one score per weight


def score_sample(splits: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split's first SCORE_EXAMPLES_PER_CLASS examples of each class, in split order, on
    the CPU where tickets' weights are scored (the splits may live on a GPU)."""
    labels = splits.train_labels.cpu()
    chosen = (
        torch.cat([torch.nonzero(labels == c).flatten()[:SCORE_EXAMPLES_PER_CLASS] for c in torch.unique(labels)])
        .sort()
        .values
    )
    return splits.train_images.cpu()[chosen], labels[chosen]


def _dense_model(template: nn.Module, weights: Scores, dtype: torch.dtype) -> nn.Module:
    model = copy.deepcopy(template).cpu()
    model.load_state_dict(weights)
    return model.to(dtype).eval()


def _loss_gradients(
    model: nn.Module,
    names: list[str],
    images: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    create_graph: bool = False,
) -> tuple[torch.Tensor, ...]:
    params = dict(model.named_parameters())
    loss = F.cross_entropy(model(images) / temperature, labels)
    return torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph)


def snip_scores(template: nn.Module, weights: Scores, names: list[str], splits: Splits) -> Scores:
    model = _dense_model(template, weights, torch.float32)
    grads = _loss_gradients(model, names, *score_sample(splits))
    params = dict(model.named_parameters())
    return {n: (params[n] * g).abs().detach() for n, g in zip(names, grads)}


def grasp_scores(template: nn.Module, weights: Scores, names: list[str], splits: Splits) -> Scores:
    model = _dense_model(template, weights, torch.float32)
    images, labels = score_sample(splits)
    stopped = [g.detach() for g in _loss_gradients(model, names, images, labels, temperature=GRASP_TEMPERATURE)]
    grads = _loss_gradients(model, names, images, labels, temperature=GRASP_TEMPERATURE, create_graph=True)
    params = dict(model.named_parameters())
    flow = sum((s * g).sum() for s, g in zip(stopped, grads))  # g . grad L, whose gradient is Hg
    hessian_gradient = torch.autograd.grad(flow, [params[n] for n in names])
    return {n: (params[n] * hg).detach() for n, hg in zip(names, hessian_gradient)}


def _linearized(template: nn.Module, weights: Scores) -> nn.Module:
    """The network in float64 with every parameter and batch-norm statistic replaced by its |value|."""
    model = _dense_model(template, weights, torch.float64)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    return model


def _flow(model: nn.Module, names: list[str], input_shape: tuple[int, ...]) -> Scores:
    params = dict(model.named_parameters())
    model.zero_grad()
    model(torch.ones((1, *input_shape), dtype=torch.float64)).sum().backward()
    return {n: (params[n] * params[n].grad).abs().detach() for n in names}


def synflow_scores(template: nn.Module, weights: Scores, names: list[str], input_shape: tuple[int, ...]) -> Scores:
    """One step's synaptic flow of the dense network: |w * dR/dw|, R the summed output of the
    linearized network on an all-ones input."""
    return _flow(_linearized(template, weights), names, input_shape)


def _keep(scores: Scores, counts: dict[str, int], overall: bool) -> Mask:
    return keep_largest_overall(scores, sum(counts.values())) if overall else keep_largest(scores, counts)


def init_mask(
    method: str,
    template: nn.Module,
    weights: Scores,
    counts: dict[str, int],
    splits: Splits,
    overall: bool = False,
    invert: bool = False,
) -> Mask:
    """The mask `method` (magnitude_init, snip, grasp, synflow) keeps from the dense network at
    `weights`: `counts[name]` weights of each entry, or (overall) their total across entries,
    chosen by the method's scores (the lowest ones if `invert`)."""
    sign = -1.0 if invert else 1.0
    if method == "synflow":
        return _synflow_mask(template, weights, counts, tuple(splits.train_images.shape[1:]), overall, sign)
    if method == "magnitude_init":
        scores = {n: weights[n].detach().abs().float() for n in counts}
    elif method == "snip":
        scores = snip_scores(template, weights, list(counts), splits)
    else:
        scores = grasp_scores(template, weights, list(counts), splits)
    return _keep({n: sign * s for n, s in scores.items()}, counts, overall)


def _synflow_mask(
    template: nn.Module,
    weights: Scores,
    counts: dict[str, int],
    input_shape: tuple[int, ...],
    overall: bool,
    sign: float,
) -> Mask:
    """Iterative SynFlow: step i of n keeps a fraction (kept / size)^(i/n) of each entry (or of all
    entries together), scoring the network pruned so far; pruned weights are never revived."""
    model = _linearized(template, weights)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if n in counts}
    params = dict(model.named_parameters())
    sizes = {n: start[n].numel() for n in counts}
    mask = Mask({n: torch.ones_like(start[n], dtype=torch.float32) for n in counts})
    for step in range(1, SYNFLOW_ITERATIONS + 1):
        with torch.no_grad():
            for n in counts:
                params[n].copy_(start[n] * mask[n])
        scores = _flow(model, list(counts), input_shape)
        never = torch.tensor(-torch.inf, dtype=torch.float64)
        ranked = {n: torch.where(mask[n].bool(), sign * scores[n], never) for n in counts}
        fraction = step / SYNFLOW_ITERATIONS
        if overall:
            total, kept = sum(sizes.values()), sum(counts.values())
            mask = keep_largest_overall(ranked, round(total * (kept / total) ** fraction))
        else:
            mask = keep_largest(ranked, {n: round(sizes[n] * (counts[n] / sizes[n]) ** fraction) for n in counts})
    return mask
