"""Growth that preserves the function (Net2Net: Chen, Goodfellow & Shlens, ICLR 2016).

`grow(parent_spec, parent_state, child_spec, ...)` turns a trained parent's weights
into weights for a grown child that computes the same function, so the child's
training continues from what its parent learned instead of starting over. It
handles the two transitions the search makes, alone or together:

* **Widen** (the width stage's `spec.with_width(w)`): each layer's new units copy
  randomly chosen existing units (conv filters and every BatchNorm statistic and
  affine parameter, so a copy's activation equals its original's in train and eval
  mode). The consumer of a copied unit (the next conv's input channels, the head's
  input features) divides that unit's outgoing weights by its copy count, so the
  sum over the copies is the original contribution. `noise` adds zero-sum noise to
  those outgoing weights across each unit's copies: the function stays exact
  (the copies' activations are equal, so only the sum of their weights counts),
  but the copies now receive different gradients and stop being stuck equal.
  In residual networks, blocks joined by an identity shortcut share one copy map
  (a shortcut adds channel j to channel j, so both sides must copy the same unit).

* **Deepen** (the depth stage's `LayoutPolicy.deepen(spec, width)`): a new block on
  top of the stack, just before the pooled head, whose input is non-negative (every
  block ends in a ReLU, and max-pooling keeps signs), so ReLU is the identity on it.
  - plain block as wide or wider than the block below: a Dirac kernel (centre tap
    1, any odd kernel size, zero padding reads nothing) passes channel m(j) to
    output j, the first channels straight through, extra ones copying random
    channels (the head divides as in widening). Its BatchNorm is set to the
    identity in eval mode *with* running statistics measured on `inputs`:
    running mean/var = the statistics of the data reaching it, weight =
    sqrt(var + eps), bias = mean. Eval mode is then the identity on any input; in
    train mode the batch statistics are close to those running ones, so the block
    is also close to the identity while training, where a plain (mean 0, var 1)
    choice would whiten the features the head was trained on.
  - residual block as wide or wider: its last BatchNorm's scale and shift start at
    zero, so the body adds nothing (in train mode too) and the block is
    ReLU(shortcut(x)) = x: an identity shortcut when the widths match, else a 1x1
    projection built like the Dirac kernel above (BatchNorm set the same way).
    The body's convolutions keep PyTorch's default random init, so they learn as
    soon as that scale moves off zero.
  - a new block *narrower* than the one below (fewer channels than it receives)
    cannot pass its input through. It carries the head instead: its first K
    channels (K classes) compute the head's logits per pixel, z = W_head x, which
    average-pooling turns into the logits; BatchNorm's shift adds s (set from the
    data in `inputs`: the distance below zero of the lowest z seen plus one range
    of margin) so that the ReLU passes z + s untouched, and the new head is the
    identity with bias b - s. Exact wherever z stays above -s, which holds on the
    calibration data and anything within one range of it, not on arbitrary
    inputs. The remaining channels copy the most important input channels (by
    head-weight norm) with zero head weights, as fresh features to learn from.
    A block narrower than K keeps only the best rank-width approximation of the
    head: *not* function-preserving, and `GrowthReport.exact` says so.
  - a new block that halves the resolution: everything up to its max-pool is
    preserved as above, but the head then averages a 2x2-max-pooled map, and
    mean(maxpool(x)) >= mean(x) channel by channel, so the logits change. Exact
    preservation is impossible here; `GrowthReport.exact` is False.

All of this is exact in eval mode; in train mode BatchNorm uses batch statistics,
so a grown network is only approximately its parent until its running statistics
settle (widening is exact in both modes). Pure functions on state dicts; imports
only PyTorch.

Training a grown child (the trainer's `initial_state`, `TrainSettings.warm_lr_factor`):
a *fresh* optimizer, because the parent's momentum buffers belong to other tensor
shapes and to the parent's last steps; a starting rate of `lr x warm_lr_factor`
(default 1.0: the usual rate); then reduce-on-plateau and the stability rule
(docs/design.md §2: at least `min_epochs`, until stable) as for any trial. Why the
full rate: a child starts at its parent's minimum, where the training loss is
near zero. A smaller rate leaves it a copy of its parent that stabilises after
`min_epochs` without ever using its new units, so the width stage keeps the
narrowest network and the depth stage stops at once; the full rate moves it
enough to find out whether the new capacity helps, and it still settles in
fewer epochs than a cold start. Measured on digits with scripts/bench_growth.py
(5 seeds; warm width+depth stages vs cold, share of cold's seconds / change of
the depth winner's val accuracy in points; a shared 2-core machine):

    warm_lr_factor     0.3            0.5            0.7            1.0
    default preset     0.29 / -0.98   0.42 / -0.49   0.63 / -0.42   0.56 / -0.14
    quick preset       -              0.44 / -0.98   0.56 / -0.91   0.65 / -0.56

One validation image is 0.35 points there, so these are a few images apart.
What stays true at every rate: a warm child keeps its lineage's luck. When the
baseline is a weak draw (seeds 3 and 4 above: 0.976 where others reach 0.99), its
warm children have nearly zero training loss and little gradient to leave its
solution, while a cold candidate draws again; that is where the warm searches
lose their points (the warm-start generalisation gap of Ash & Adams, 2020).

One module of ~390 lines on purpose: widening and deepening share the copy maps
and the BatchNorm calibration, and each construction sits beside the others it
must agree with (a grown child computes its parent's function only if all do).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from searcher.model.build import build_model
from searcher.model.spec import ArchSpec, LayerSpec

State = dict[str, torch.Tensor]
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
BN_EPS = 1e-5  # nn.BatchNorm2d's default eps, which build.py uses
DEFAULT_NOISE = 0.05  # zero-sum noise on copied units' outgoing weights, x the tensor's std


class GrowthError(ValueError):
    """The child is not a widened and/or deepened version of the parent."""


@dataclass(frozen=True)
class GrowthReport:
    """What a growth step preserved: `exact` is False where no exact mapping exists (see the module docstring)."""

    exact: bool
    notes: tuple[str, ...] = ()


def grow(
    parent_spec: ArchSpec,
    parent_state: State,
    child_spec: ArchSpec,
    in_channels: int,
    num_classes: int,
    *,
    noise: float = DEFAULT_NOISE,
    generator: torch.Generator | None = None,
    inputs: torch.Tensor | None = None,
) -> State:
    """The child's state dict, computing the parent's function (see `grow_with_report`)."""
    return grow_with_report(
        parent_spec, parent_state, child_spec, in_channels, num_classes, noise=noise, generator=generator, inputs=inputs
    )[0]


def grow_with_report(
    parent_spec: ArchSpec,
    parent_state: State,
    child_spec: ArchSpec,
    in_channels: int,
    num_classes: int,
    *,
    noise: float = DEFAULT_NOISE,
    generator: torch.Generator | None = None,
    inputs: torch.Tensor | None = None,
) -> tuple[State, GrowthReport]:
    """Widen the parent's layers to the child's widths, then add the child's extra blocks one by one.

    `inputs`: a batch of normalised training images, (N, C, H, W). New BatchNorm
    layers take their running statistics from the data that reaches them there
    (see the module docstring); a narrower new block needs them.
    """
    check_transition(parent_spec, child_spec)
    generator = generator or torch.Generator().manual_seed(0)
    inputs = None if inputs is None else inputs.detach().float().cpu()
    state = {name: tensor.detach().float().cpu().clone() if tensor.is_floating_point() else tensor.clone() for name, tensor in parent_state.items()}
    spec = replace(parent_spec, dropout=child_spec.dropout)
    notes: list[str] = []
    wider = tuple(replace(layer, width=child.width) for layer, child in zip(spec.layers, child_spec.layers, strict=False))
    if wider != spec.layers:
        state = widen(spec, state, replace(spec, layers=wider), in_channels, num_classes, noise, generator)
        spec = replace(spec, layers=wider)
    for layer in child_spec.layers[parent_spec.depth :]:
        state, note = deepen(spec, state, layer, in_channels, num_classes, noise, generator, inputs)
        spec = replace(spec, layers=spec.layers + (layer,))
        if note:
            notes.append(note)
    return state, GrowthReport(exact=not notes, notes=tuple(notes))


def check_transition(parent: ArchSpec, child: ArchSpec) -> None:
    if child.block != parent.block:
        raise GrowthError(f"cannot grow a {parent.block} network into a {child.block} one.")
    if child.depth < parent.depth:
        raise GrowthError(f"the child ({child.describe()}) is shallower than its parent ({parent.describe()}).")
    for index, (old, new) in enumerate(zip(parent.layers, child.layers, strict=False)):
        if (old.kernel, old.halves) != (new.kernel, new.halves) or new.width < old.width:
            raise GrowthError(f"layer {index} of the child ({new}) is not a widening of the parent's ({old}).")
    if parent.block == "residual":
        for index in range(1, parent.depth):
            same_before = parent.layers[index - 1].width == parent.layers[index].width
            same_after = child.layers[index - 1].width == child.layers[index].width
            if same_before != same_after:
                raise GrowthError(f"widening residual layer {index} would turn its shortcut into a projection or back; widen its neighbours alike.")


# ---------------------------------------------------------------- widen


def copy_map(old: int, new: int, generator: torch.Generator) -> torch.Tensor:
    """New unit j -> the old unit it copies: itself for j < old, a random old unit above."""
    return torch.cat([torch.arange(old), torch.randint(0, old, (new - old,), generator=generator)])


def copy_rows(tensor: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """A unit's incoming weights (or any per-unit value) for the copies."""
    return tensor[mapping].clone()


def split_columns(weight: torch.Tensor, mapping: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """Outgoing weights of copied units: divided by the copy count, plus zero-sum noise within each unit's copies."""
    counts = torch.bincount(mapping, minlength=weight.shape[1]).to(weight.dtype)
    shape = (1, -1) + (1,) * (weight.ndim - 2)
    split = weight[:, mapping] / counts[mapping].view(shape)
    if noise > 0 and len(mapping) > weight.shape[1]:
        scale = noise * float(weight.std()) if weight.numel() > 1 else noise
        jitter = torch.randn(split.shape, generator=generator, dtype=split.dtype) * scale
        group_sum = torch.zeros_like(weight).index_add_(1, mapping, jitter)
        jitter -= group_sum[:, mapping] / counts[mapping].view(shape)  # mean over each unit's copies is zero
        split += jitter
    return split


def block_names(index: int, block: str) -> dict[str, str]:
    """State-dict prefixes of a block's parts (see build.py)."""
    prefix = f"blocks.{index}"
    if block == "plain":
        return {"conv": f"{prefix}.body.0", "bn": f"{prefix}.body.1"}
    return {
        "conv1": f"{prefix}.body.0",
        "bn1": f"{prefix}.body.1",
        "conv2": f"{prefix}.body.3",
        "bn2": f"{prefix}.body.4",
        "short_conv": f"{prefix}.shortcut.0",
        "short_bn": f"{prefix}.shortcut.1",
    }


def copy_bn(state: State, out: State, prefix: str, mapping: torch.Tensor) -> None:
    for field in BN_FIELDS:
        out[f"{prefix}.{field}"] = copy_rows(state[f"{prefix}.{field}"], mapping)
    out[f"{prefix}.num_batches_tracked"] = state[f"{prefix}.num_batches_tracked"].clone()


def widen_conv(weight: torch.Tensor, in_map: torch.Tensor, out_map: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    return copy_rows(split_columns(weight, in_map, noise, generator), out_map)


def widen(
    spec: ArchSpec, state: State, wider: ArchSpec, in_channels: int, num_classes: int, noise: float, generator: torch.Generator
) -> State:
    """Net2WiderNet on every layer at once: `wider` has the same layers, each at least as wide."""
    out: State = {}
    previous = torch.arange(in_channels)  # the input is never widened
    previous_old_width = in_channels
    for index, (old, new) in enumerate(zip(spec.layers, wider.layers, strict=True)):
        names = block_names(index, spec.block)
        identity_shortcut = spec.block == "residual" and previous_old_width == old.width
        mapping = previous if identity_shortcut else copy_map(old.width, new.width, generator)
        if spec.block == "plain":
            out[f"{names['conv']}.weight"] = widen_conv(state[f"{names['conv']}.weight"], previous, mapping, noise, generator)
            copy_bn(state, out, names["bn"], mapping)
        else:
            inner = copy_map(old.width, new.width, generator)  # the channels between the two convs
            out[f"{names['conv1']}.weight"] = widen_conv(state[f"{names['conv1']}.weight"], previous, inner, noise, generator)
            copy_bn(state, out, names["bn1"], inner)
            out[f"{names['conv2']}.weight"] = widen_conv(state[f"{names['conv2']}.weight"], inner, mapping, noise, generator)
            copy_bn(state, out, names["bn2"], mapping)
            if not identity_shortcut:
                out[f"{names['short_conv']}.weight"] = widen_conv(state[f"{names['short_conv']}.weight"], previous, mapping, noise, generator)
                copy_bn(state, out, names["short_bn"], mapping)
        previous, previous_old_width = mapping, old.width
    out["head.weight"] = split_columns(state["head.weight"], previous, noise, generator)
    out["head.bias"] = state["head.bias"].clone()
    return out


# ---------------------------------------------------------------- deepen


def features(spec: ArchSpec, state: State, inputs: torch.Tensor, in_channels: int, num_classes: int) -> torch.Tensor:
    """What reaches the head's pooling in eval mode: (N, C, H, W), non-negative."""
    model = build_model(spec, in_channels, num_classes)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return model.blocks(inputs)


def channel_stats(values: torch.Tensor | None, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased, as BatchNorm keeps it) variance; (0, 1) without data."""
    if values is None:
        return torch.zeros(channels), torch.ones(channels)
    flat = values.transpose(0, 1).reshape(channels, -1)
    return flat.mean(1), flat.var(1) if flat.shape[1] > 1 else torch.zeros(channels)


def identity_bn(out: State, prefix: str, mean: torch.Tensor, var: torch.Tensor, shift: torch.Tensor | None = None) -> None:
    """BatchNorm that is y -> y (+ shift) in eval mode, with running statistics `mean`, `var` of the data it sees."""
    out[f"{prefix}.running_mean"] = mean.clone()
    out[f"{prefix}.running_var"] = var.clone()
    out[f"{prefix}.weight"] = torch.sqrt(var + BN_EPS)
    out[f"{prefix}.bias"] = mean.clone() if shift is None else mean + shift
    out[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def centre_kernel(matrix: torch.Tensor, kernel: int) -> torch.Tensor:
    """A (out, in) matrix as a kernel x kernel convolution that reads only each pixel's own value."""
    weight = torch.zeros(matrix.shape[0], matrix.shape[1], kernel, kernel)
    weight[:, :, kernel // 2, kernel // 2] = matrix
    return weight


def seeded_template(spec: ArchSpec, in_channels: int, num_classes: int, generator: torch.Generator) -> State:
    """Default-initialised weights of `spec`, drawn reproducibly from `generator`."""
    return build_model(spec, in_channels, num_classes, seed=int(torch.randint(0, 2**62, (1,), generator=generator))).state_dict()


def deepen(
    spec: ArchSpec,
    state: State,
    layer: LayerSpec,
    in_channels: int,
    num_classes: int,
    noise: float,
    generator: torch.Generator,
    inputs: torch.Tensor | None,
) -> tuple[State, str | None]:
    """Net2DeeperNet: `spec` plus `layer` on top; returns the state and a note when the function changes."""
    child = replace(spec, layers=spec.layers + (layer,))
    index, below = spec.depth, spec.layers[-1].width
    fresh = seeded_template(child, in_channels, num_classes, generator)
    out = dict(state)
    out.update({name: tensor for name, tensor in fresh.items() if name.startswith(f"blocks.{index}.")})
    names = block_names(index, spec.block)
    x = features(spec, state, inputs, in_channels, num_classes) if inputs is not None else None

    if layer.width >= below:
        mapping = copy_map(below, layer.width, generator)
        matrix = torch.zeros(layer.width, below)
        matrix[torch.arange(layer.width), mapping] = 1.0
        mean, var = channel_stats(None if x is None else x[:, mapping], layer.width)
        if spec.block == "plain":
            out[f"{names['conv']}.weight"] = centre_kernel(matrix, layer.kernel)
            identity_bn(out, names["bn"], mean, var)
        else:
            zero_residual(out, names)
            if layer.width != below:
                out[f"{names['short_conv']}.weight"] = centre_kernel(matrix, 1)
                identity_bn(out, names["short_bn"], mean, var)
        out["head.weight"] = split_columns(state["head.weight"], mapping, noise, generator)
        note = None
    else:
        note = carry_head(out, state, spec, layer, names, x, num_classes)
    if layer.halves:
        pooled = "its max-pool halves the resolution, so the head averages a max-pooled map (mean(maxpool(x)) >= mean(x))"
        note = f"{note}; {pooled}" if note else pooled
    if note:
        note = f"new layer {index + 1} ({layer.width} channels over {below}): {note}"
    return out, note


def zero_residual(out: State, names: dict[str, str]) -> None:
    """A residual body whose last BatchNorm has zero scale and shift adds nothing: the block is its shortcut."""
    out[f"{names['bn2']}.weight"] = torch.zeros_like(out[f"{names['bn2']}.weight"])
    out[f"{names['bn2']}.bias"] = torch.zeros_like(out[f"{names['bn2']}.bias"])


def carry_head(
    out: State, state: State, spec: ArchSpec, layer: LayerSpec, names: dict[str, str], x: torch.Tensor | None, num_classes: int
) -> str | None:
    """A narrower new block computes the head's logits per pixel (shifted non-negative); the new head undoes the shift."""
    if x is None:
        raise GrowthError(
            f"a new layer narrower ({layer.width}) than the one below ({spec.layers[-1].width}) needs `inputs` to calibrate it."
        )
    head_weight, head_bias = state["head.weight"], state["head.bias"]
    rank = min(num_classes, layer.width)
    if rank == num_classes:
        projection, readout, note = head_weight, torch.eye(num_classes), None
    else:  # keep the best rank-`width` approximation of the head: the function changes
        u, s, vh = torch.linalg.svd(head_weight, full_matrices=False)
        projection, readout = vh[:rank], u[:, :rank] * s[:rank]
        note = f"narrower than the {num_classes} classes: the head is approximated at rank {rank}"
    importance = head_weight.norm(dim=0) * x.transpose(0, 1).reshape(x.shape[1], -1).std(1)
    spare = importance.argsort(descending=True)[: layer.width - rank]  # the best input channels, passed on unused
    matrix = torch.cat([projection, torch.eye(x.shape[1])[spare]])
    z = torch.einsum("oc,nchw->nohw", matrix, x)
    low = z.transpose(0, 1).reshape(layer.width, -1).amin(1)
    high = z.transpose(0, 1).reshape(layer.width, -1).amax(1)
    shift = (-low).clamp_min(0) + (high - low)  # z + shift >= 0 on the data seen, with one range of margin
    shift[rank:] = 0  # the spare channels are copies of non-negative inputs already
    mean, var = channel_stats(z, layer.width)
    if spec.block == "plain":
        out[f"{names['conv']}.weight"] = centre_kernel(matrix, layer.kernel)
        identity_bn(out, names["bn"], mean, var, shift)
    else:
        zero_residual(out, names)
        out[f"{names['short_conv']}.weight"] = centre_kernel(matrix, 1)
        identity_bn(out, names["short_bn"], mean, var, shift)
    out["head.weight"] = torch.cat([readout, torch.zeros(num_classes, layer.width - rank)], dim=1)
    out["head.bias"] = head_bias - readout @ shift[:rank]
    return note
