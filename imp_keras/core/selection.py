"""Which weights to keep: pruning criteria as pure functions on NumPy arrays.

A criterion receives the prunable tensors of a model in model order (`weights`), their current
boolean masks (True = alive) and `count`, the number of alive weights to remove now. It returns new
masks with exactly `count` fewer alive weights. Only alive weights are ranked, and a pruned weight
never comes back: every new mask is the old mask AND a keep mask.

Ties are broken deterministically by position: earlier tensor first, then lower flat (C-order)
index, so identical inputs give identical masks on every worker and after every resume.

Criteria:
  - `global`: one magnitude threshold over all tensors (Zimmer et al.'s default).
  - `uniform`: every tensor ends at the same density (relative to its full size).
  - `uniform_plus`: as `uniform`, but the first convolution kernel stays as it is (dense) and the
    last tensor keeps at least 20 % of its weights (Gale et al., 2019).
  - `erk`: Erdos-Renyi-Kernel densities, proportional to the sum of a kernel's dimensions over their
    product (Evci et al., 2020), capped at what is still alive.
  - `lamp`: layer-adaptive magnitude scores w_u^2 / sum_{|w_v| >= |w_u|} w_v^2 ranked globally
    (Lee et al., 2021).

Every criterion takes a per-tensor floor (`min_alive` of `select`: keep at least k weights, or a
fraction, of every tensor), so no layer collapses: global and LAMP never rank a tensor's `floor`
best weights, the layerwise criteria allocate at least the floor to every tensor.

`select_blocks` is the global criterion over whole blocks of 2-D tensors (Dense kernels), for
runtimes with block-sparse kernels (TFLite's sparse fully-connected kernel runs 1x4 blocks of its
[out, in] weights, which are Keras (4, 1) blocks of an [in, out] kernel). Whole blocks cannot always
add up to `count`, so it removes as close to `count` as they allow.
"""

from collections.abc import Callable, Sequence
from fractions import Fraction
import math

import numpy as np

__all__ = [
    "CRITERIA",
    "Criterion",
    "check_min_alive",
    "erk",
    "floors",
    "get_criterion",
    "global_magnitude",
    "lamp",
    "max_removable",
    "select",
    "select_blocks",
    "uniform",
    "uniform_plus",
    "within_blocks",
]

_LAST_LAYER_MIN_DENSITY = 0.2  # uniform_plus, as Gale et al. (2019)

Criterion = Callable[[Sequence[np.ndarray], Sequence[np.ndarray], int], list[np.ndarray]]


def _flat(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(a).reshape(-1) for a in arrays]


def _prune_lowest(
    scores: Sequence[np.ndarray], masks: Sequence[np.ndarray], count: int, *, magnitude: bool = False
) -> list[np.ndarray]:
    """Flat masks without the `count` alive entries of lowest score, over all tensors at once.

    One `np.partition` finds the threshold (no full sort); ties at the threshold are removed in
    position order. With `magnitude`, the scores are |scores|, computed into reused buffers: at
    tens of millions of weights, fresh allocations cost more than the arithmetic.
    """
    if count == 0:
        return [m.copy() for m in masks]
    # Dead entries score +inf, so the count-th smallest of everything is the count-th smallest
    # alive score: one in-place partition of one buffer, no boolean gathers, no extra copies.
    dtype = np.result_type(*scores, np.float32)  # +inf marks dead entries, so never an integer type
    candidates = np.empty(sum(s.size for s in scores), dtype=dtype)
    offset = 0
    for s, m in zip(scores, masks):
        view = candidates[offset : offset + s.size]
        if magnitude:
            np.abs(s, out=view)
        else:
            np.copyto(view, s)
        np.copyto(view, np.inf, where=~m)
        offset += s.size
    n_alive = sum(int(np.count_nonzero(m)) for m in masks)
    if count >= n_alive:
        return [np.zeros_like(m) for m in masks]
    candidates.partition(count - 1)
    threshold = candidates[count - 1]
    del candidates
    scratch = np.empty(max(s.size for s in scores), dtype=dtype) if magnitude else None

    def score(s: np.ndarray) -> np.ndarray:
        return np.abs(s, out=scratch[: s.size]) if magnitude else s

    new = [m & (score(s) >= threshold) for s, m in zip(scores, masks)]
    ties_to_remove = count - (n_alive - sum(int(np.count_nonzero(m)) for m in new))
    for s, m in zip(scores, new):
        if ties_to_remove == 0:
            break
        tied = np.flatnonzero(m & (score(s) == threshold))[:ties_to_remove]
        m[tied] = False
        ties_to_remove -= tied.size
    return new


def _protected(scores: Sequence[np.ndarray], masks: Sequence[np.ndarray], floor: np.ndarray) -> list[np.ndarray]:
    """Per flat tensor, its `floor` alive entries that removal in score order would take last: the
    highest scores, the later position on ties."""
    kept = []
    for s, m, k in zip(scores, masks, floor):
        alive = np.flatnonzero(m)
        keep = np.zeros_like(m)
        if k:
            keep[alive[np.lexsort((alive, s[alive]))[alive.size - int(k) :]]] = True
        kept.append(keep)
    return kept


def _prune_lowest_above(
    scores: Sequence[np.ndarray], masks: Sequence[np.ndarray], count: int, floor: np.ndarray | None, magnitude: bool = False
) -> list[np.ndarray]:
    """`_prune_lowest`, never taking a tensor below its `floor` alive: the same masks as removing
    the lowest-scoring alive weight over all tensors `count` times, skipping tensors at their floor."""
    if floor is None or not floor.any():
        return _prune_lowest(scores, masks, count, magnitude=magnitude)
    keep = _protected([np.abs(s) if magnitude else s for s in scores], masks, floor)
    candidates = [m & ~k for m, k in zip(masks, keep)]
    available = int(sum(np.count_nonzero(c) for c in candidates))
    if count > available:
        raise ValueError(
            f"Cannot remove {count} weights: the per-tensor floor (`min_alive`) keeps {int(floor.sum())} of them, "
            f"so at most {available} can go. Lower `min_alive` or `goal_sparsity`."
        )
    return [n | k for n, k in zip(_prune_lowest(scores, candidates, count, magnitude=magnitude), keep)]


def _ceil_of_fraction(fraction: float, size: int) -> int:
    """ceil(fraction * size) for the decimal `fraction` was written as: 0.07 * 100 is
    7.000000000000001 in binary floating point, whose ceiling would keep one weight too many."""
    return math.ceil(Fraction(str(fraction)) * size)


def floors(min_alive: int | float | None, sizes: Sequence[int], alive: Sequence[int]) -> np.ndarray:
    """Per tensor, the fewest alive weights `min_alive` lets a criterion leave: at least k weights
    (an int) or ceil(fraction * size) (a float in (0, 1)), never more than are alive now.

    >>> floors(0.01, [1000, 50], [1000, 20]).tolist(), floors(3, [1000, 50], [1000, 2]).tolist()
    ([10, 1], [3, 2])
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if min_alive is None:
        wanted = np.zeros_like(sizes)
    elif isinstance(min_alive, (float, np.floating)):
        wanted = np.array([_ceil_of_fraction(min_alive, size) for size in sizes.tolist()], dtype=np.int64)
    else:
        wanted = np.full_like(sizes, min_alive)
    return np.minimum(np.minimum(wanted, sizes), np.asarray(alive, dtype=np.int64))


def check_min_alive(min_alive: object) -> int | float | None:
    """`min_alive` as None, an int >= 1 or a float in (0, 1); raises ValueError otherwise."""
    if min_alive is None:
        return None
    if isinstance(min_alive, (float, np.floating)) and 0 < min_alive < 1:
        return float(min_alive)
    if isinstance(min_alive, (int, np.integer)) and not isinstance(min_alive, bool) and min_alive >= 1:
        return int(min_alive)
    raise ValueError(
        "`min_alive` must be None, a number of weights (an int >= 1) or a fraction of each tensor (a float in "
        f"(0, 1)) that every tensor keeps. Received: min_alive={min_alive!r}"
    )


def _prune_each_to(weights: Sequence[np.ndarray], masks: Sequence[np.ndarray], keep: np.ndarray) -> list[np.ndarray]:
    return [
        _prune_lowest([w], [m], int(np.count_nonzero(m)) - int(k), magnitude=True)[0]
        for w, m, k in zip(weights, masks, keep)
    ]


def _allocate(total: int, desire: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Integer per-tensor counts proportional to `desire`, within [lower, upper], summing to `total`.

    Water-filling: find c with sum(clip(c * desire, lower, upper)) == total by bisection, then round
    down and hand the remaining units to the largest fractional parts (earlier tensor on ties).
    """
    desire = np.asarray(desire, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.int64)
    upper = np.asarray(upper, dtype=np.int64)
    if not lower.sum() <= total <= upper.sum():
        raise ValueError(
            f"Cannot keep {total} weights: the per-layer bounds of this criterion allow between "
            f"{int(lower.sum())} and {int(upper.sum())}."
        )
    if not np.any(desire[lower < upper] > 0):
        desire = (upper - lower).astype(np.float64)
    positive = desire > 0
    low_c, high_c = 0.0, float(np.max(upper[positive] / desire[positive])) if positive.any() else 0.0
    for _ in range(200):
        mid = (low_c + high_c) / 2
        if np.clip(mid * desire, lower, upper).sum() <= total:
            low_c = mid
        else:
            high_c = mid
    real = np.clip(low_c * desire, lower, upper)
    counts = np.floor(real).astype(np.int64)
    missing = total - int(counts.sum())
    while missing > 0:
        room = np.flatnonzero(counts < upper)
        order = room[np.lexsort((room, -(real[room] - counts[room])))][:missing]
        counts[order] += 1
        missing -= order.size
    return counts


def _alive(masks: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([np.count_nonzero(m) for m in masks], dtype=np.int64)


def _reshaped(flat_masks: list[np.ndarray], weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [m.reshape(np.shape(w)) for m, w in zip(flat_masks, weights)]


def global_magnitude(
    weights: Sequence[np.ndarray], masks: Sequence[np.ndarray], count: int, *, floor: np.ndarray | None = None
) -> list[np.ndarray]:
    """Removes the `count` alive weights of smallest magnitude over all tensors together (each
    tensor keeping at least its `floor`)."""
    return _reshaped(_prune_lowest_above(_flat(weights), _flat(masks), count, floor, magnitude=True), weights)


def _layerwise(weights: Sequence[np.ndarray], masks: Sequence[np.ndarray], keep: np.ndarray) -> list[np.ndarray]:
    return _reshaped(_prune_each_to(_flat(weights), _flat(masks), keep), weights)


def _lower(alive: np.ndarray, floor: np.ndarray | None) -> np.ndarray:
    return np.zeros_like(alive) if floor is None else np.asarray(floor, dtype=np.int64)


def uniform(
    weights: Sequence[np.ndarray], masks: Sequence[np.ndarray], count: int, *, floor: np.ndarray | None = None
) -> list[np.ndarray]:
    """Removes by magnitude within each tensor so that all end at the same density (each keeping at
    least its `floor`)."""
    alive = _alive(masks)
    sizes = np.array([np.size(w) for w in weights])
    keep = _allocate(int(alive.sum()) - count, sizes, _lower(alive, floor), alive)
    return _layerwise(weights, masks, keep)


def uniform_plus(
    weights: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    count: int,
    *,
    last_layer_min_density: float = _LAST_LAYER_MIN_DENSITY,
    floor: np.ndarray | None = None,
) -> list[np.ndarray]:
    """As `uniform`, but the first convolution kernel is not pruned and the last tensor keeps at
    least `last_layer_min_density` of its weights (Gale et al., 2019)."""
    alive = _alive(masks)
    sizes = np.array([np.size(w) for w in weights])
    lower = _uniform_plus_floor([np.shape(w) for w in weights], alive, last_layer_min_density)
    lower = np.maximum(lower, _lower(alive, floor))
    keep = _allocate(int(alive.sum()) - count, sizes, lower, alive)
    return _layerwise(weights, masks, keep)


def _uniform_plus_floor(shapes: Sequence[tuple[int, ...]], alive: np.ndarray, last_layer_min_density: float) -> np.ndarray:
    """What `uniform_plus` keeps of each tensor: all of the first convolution kernel, and at least
    `last_layer_min_density` of the last tensor."""
    lower = np.zeros_like(alive)
    first_conv = next((i for i, shape in enumerate(shapes) if len(shape) >= 3), None)
    if first_conv is not None:
        lower[first_conv] = alive[first_conv]
    last = len(shapes) - 1
    lower[last] = max(lower[last], min(alive[last], _ceil_of_fraction(last_layer_min_density, math.prod(shapes[last]))))
    return lower


def erk(
    weights: Sequence[np.ndarray], masks: Sequence[np.ndarray], count: int, *, floor: np.ndarray | None = None
) -> list[np.ndarray]:
    """Erdos-Renyi-Kernel: keeps per tensor in proportion to the sum of its dimensions."""
    alive = _alive(masks)
    desire = np.array([float(sum(np.shape(w))) for w in weights])
    keep = _allocate(int(alive.sum()) - count, desire, _lower(alive, floor), alive)
    return _layerwise(weights, masks, keep)


def _lamp_scores(weight: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """LAMP score of each alive weight; equal magnitudes share one score, so no stable sort is needed
    and ties fall to the position order of `_prune_lowest`."""
    scores = np.zeros(weight.shape, dtype=np.float64)
    alive_idx = np.flatnonzero(mask)
    if alive_idx.size == 0:
        return scores
    alive_sq = np.square(weight[alive_idx].astype(np.float64))
    order = np.argsort(alive_sq)
    sorted_sq = alive_sq[order]
    tail_sums = np.cumsum(sorted_sq[::-1])[::-1]
    group_start = np.r_[True, sorted_sq[1:] != sorted_sq[:-1]]
    tail_sums = tail_sums[np.maximum.accumulate(np.where(group_start, np.arange(sorted_sq.size), 0))]
    with np.errstate(invalid="ignore", divide="ignore"):
        scores[alive_idx[order]] = np.where(tail_sums > 0, sorted_sq / tail_sums, 0.0)
    return scores


def lamp(
    weights: Sequence[np.ndarray], masks: Sequence[np.ndarray], count: int, *, floor: np.ndarray | None = None
) -> list[np.ndarray]:
    """Layer-adaptive magnitude pruning: ranks LAMP scores of alive weights over all tensors."""
    flat_w, flat_m = _flat(weights), _flat(masks)
    scores = [_lamp_scores(w, m) for w, m in zip(flat_w, flat_m)]
    return _reshaped(_prune_lowest_above(scores, flat_m, count, floor), weights)


CRITERIA: dict[str, Criterion] = {
    "global": global_magnitude,
    "uniform": uniform,
    "uniform_plus": uniform_plus,
    "erk": erk,
    "lamp": lamp,
}


def get_criterion(selection: str | Criterion) -> Criterion:
    """Returns the criterion named `selection` (a key of `CRITERIA`), or `selection` if callable."""
    if callable(selection):
        return selection
    if not isinstance(selection, str) or selection not in CRITERIA:
        raise ValueError(f"`selection` must be one of {sorted(CRITERIA)} or a callable. Received: selection={selection!r}")
    return CRITERIA[selection]


def max_removable(
    selection: str | Criterion, shapes: Sequence[tuple[int, ...]], min_alive: int | float | None = None
) -> int | None:
    """The most weights `selection` can remove, over all its cycles, from full tensors of `shapes`.

    Every criterion may empty every tensor except `uniform_plus`, which keeps the first convolution
    kernel dense and at least 20 % of the last tensor, and except for what `min_alive` keeps of
    every tensor. None for a callable imp_keras does not know.

    >>> max_removable("uniform_plus", [(3, 3, 1, 8), (72, 10)])   # keeps 72 + ceil(0.2 * 720)
    576
    """
    criterion = get_criterion(selection)
    if criterion not in CRITERIA.values():
        return None
    shapes = [tuple(shape) for shape in shapes]
    alive = np.array([math.prod(shape) for shape in shapes], dtype=np.int64)
    lower = floors(min_alive, alive, alive)
    if criterion is uniform_plus:
        lower = np.maximum(lower, _uniform_plus_floor(shapes, alive, _LAST_LAYER_MIN_DENSITY))
    return int(alive.sum() - lower.sum())


def _numbers(i: int, weight: np.ndarray) -> np.ndarray:
    """`weight` as an array NumPy can rank; bfloat16 and float8 (ml_dtypes, which NumPy does not
    count as numbers) become float32, which holds their values exactly."""
    array = np.asarray(weight)
    if array.dtype.kind == "V" and array.dtype.names is None:
        try:
            array = array.astype(np.float32)
        except (TypeError, ValueError):
            pass
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"Tensor {i}: `weights` must be numbers. Received: an array of {array.dtype}.")
    return array


def _checked(weights: Sequence[np.ndarray], masks: Sequence[np.ndarray], count: int) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """The weights as number arrays, the masks as boolean arrays and the number alive, after
    checking shapes, weights and `count`."""
    if any(isinstance(x, (str, bytes)) or not isinstance(x, (Sequence, np.ndarray)) for x in (weights, masks)):
        raise ValueError(
            "`weights` and `masks` must be lists of arrays, one per tensor. Received: "
            f"weights of type {type(weights).__name__}, masks of type {type(masks).__name__}."
        )
    if len(weights) != len(masks) or not len(weights):
        raise ValueError(
            f"`weights` and `masks` must be non-empty lists of the same length. Received: "
            f"{len(weights)} weights and {len(masks)} masks."
        )
    masks = [m if isinstance(m, np.ndarray) and m.dtype == bool else np.asarray(m) != 0 for m in masks]
    weights = [_numbers(i, w) for i, w in enumerate(weights)]
    for i, (w, m) in enumerate(zip(weights, masks)):
        if w.shape != m.shape:
            raise ValueError(f"Tensor {i}: weight shape {w.shape} differs from mask shape {m.shape}.")
        if not np.all(np.isfinite(w)):
            raise ValueError(f"Tensor {i} has NaN or Inf weights; refusing to rank them.")
    n_alive = int(_alive(masks).sum())
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= n_alive:
        raise ValueError(f"`count` must be an integer in [0, {n_alive}] (the alive weights). Received: count={count!r}")
    return weights, masks, n_alive


def select(
    selection: str | Criterion,
    weights: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    count: int,
    *,
    min_alive: int | float | None = None,
) -> list[np.ndarray]:
    """Removes exactly `count` alive weights with the given criterion and returns the new masks.

    Args:
      selection: a name from `CRITERIA` or a callable with the same signature as the criteria.
      weights: the prunable tensors, in model order.
      masks: their current masks (nonzero = alive), same shapes.
      count: how many alive weights to remove, in [0, number alive].
      min_alive: a floor for every tensor: keep at least this many of its weights (an int) or
        this fraction of them (a float in (0, 1)), or all it has alive if fewer (see `floors`).
        Built-in criteria only.

    Returns:
      Boolean masks, each a subset of the old one, with `count` fewer True entries in total.

    Example:
    >>> w = [np.array([[0.1, -2.0], [0.3, 0.05]]), np.array([1.0, -0.2])]
    >>> m = [np.ones((2, 2), bool), np.ones(2, bool)]
    >>> [x.astype(int).tolist() for x in select("global", w, m, count=3)]
    [[[0, 1], [1, 0]], [1, 0]]
    """
    criterion = get_criterion(selection)
    weights, masks, n_alive = _checked(weights, masks, count)
    min_alive = check_min_alive(min_alive)
    if min_alive is None:
        new = criterion(weights, masks, int(count))
    elif criterion in CRITERIA.values():
        new = criterion(weights, masks, int(count), floor=floors(min_alive, [np.size(w) for w in weights], _alive(masks)))
    else:
        raise ValueError(f"`min_alive` applies to the built-in criteria {sorted(CRITERIA)}. Received: selection={selection!r}")
    if len(new) != len(masks):
        raise ValueError(f"Criterion {selection!r} returned {len(new)} masks for {len(masks)} tensors.")
    if criterion not in CRITERIA.values():
        new = [(np.asarray(n) != 0) & m for n, m in zip(new, masks)]
    removed = n_alive - int(_alive(new).sum())
    if removed != count:
        raise ValueError(f"Criterion {selection!r} removed {removed} alive weights instead of count={count}.")
    return new


def within_blocks(sizes: Sequence[tuple[int, int] | None]) -> int:
    """How far whole-block pruning may land from the plan's alive count: half the largest block
    (a whole-block prefix lands within half its largest step of any target); 0 without blocks."""
    return max((math.prod(size) // 2 for size in sizes if size), default=0)


def check_block_size(block_size: object, argument: str = "block_size") -> tuple[int, int]:
    """`block_size` as a tuple of two positive ints; raises ValueError otherwise."""
    if (
        not isinstance(block_size, (tuple, list))
        or len(block_size) != 2
        or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in block_size)
    ):
        raise ValueError(f"`{argument}` must be a tuple of 2 positive integers, e.g. (4, 1). Received: {argument}={block_size!r}")
    return int(block_size[0]), int(block_size[1])


def _edges(length: int, block: int) -> np.ndarray:
    return np.arange(0, length, block)


def _units(weight: np.ndarray, mask: np.ndarray, block_size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Score (mean magnitude, dead entries as 0) and alive count of each unit of a tensor, in C-order:
    its blocks (edge blocks smaller where a dimension is not divisible), or its single weights."""
    magnitude = np.abs(np.asarray(weight, dtype=np.float64)) * mask
    if block_size is None or weight.size == 0:
        return magnitude.reshape(-1), mask.reshape(-1).astype(np.int64)
    rows, cols = _edges(weight.shape[0], block_size[0]), _edges(weight.shape[1], block_size[1])

    def block_sums(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(values, rows, axis=0), cols, axis=1)

    sizes = np.outer(np.diff(np.r_[rows, weight.shape[0]]), np.diff(np.r_[cols, weight.shape[1]]))
    return (block_sums(magnitude) / sizes).reshape(-1), block_sums(mask.astype(np.int64)).reshape(-1)


def _expand(removed: np.ndarray, shape: tuple[int, ...], block_size: tuple[int, int] | None) -> np.ndarray:
    """Element mask of the removed units of a tensor (the inverse of `_units`' cutting)."""
    if block_size is None or len(shape) != 2:
        return removed.reshape(shape)
    grid = removed.reshape(-(-shape[0] // block_size[0]), -(-shape[1] // block_size[1]))
    return grid[np.arange(shape[0]) // block_size[0]][:, np.arange(shape[1]) // block_size[1]]


def select_blocks(
    weights: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    count: int,
    block_sizes: Sequence[tuple[int, int] | None],
) -> list[np.ndarray]:
    """Global magnitude pruning of whole blocks: removes alive weights by block, as close to `count`
    as whole blocks allow.

    Each 2-D tensor with a block size (a Dense kernel, [in, out] in Keras) is cut into blocks of
    `block_sizes[i]` (edge blocks are smaller where a dimension is not divisible: every Dense layer
    can be blocked); every other tensor is ranked weight by weight. A block scores the mean
    magnitude of its entries, pruned entries counting 0. That is the L1 norm over the block size:
    a single weight scores its own magnitude, so blocks, edge blocks and unstructured weights share
    one global threshold (tfmot's block pruning ranks blocks the same way, by average pooling of
    magnitudes), and a partly pruned block ranks low and goes whole.

    The units still holding an alive weight are ranked by score, ties by position (earlier tensor,
    then C-order of the block), and the lowest are removed: the shortest prefix of that ranking whose
    alive weights add up closest to `count` (the smaller on a tie). The result is therefore within
    half the largest block of `count`, and exact when no tensor is blocked. A pruned weight never
    comes back.

    Args:
      weights: the prunable tensors, in model order.
      masks: their current masks (nonzero = alive), same shapes.
      count: how many alive weights to aim to remove, in [0, number alive].
      block_sizes: per tensor, a (rows, cols) block for a 2-D tensor, or None for unstructured.

    Returns:
      Boolean masks, each a subset of the old one.

    Example:
    >>> w = [np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]), np.array([0.05, 0.5])]
    >>> m = [np.ones((4, 2), bool), np.ones(2, bool)]
    >>> [x.astype(int).tolist() for x in select_blocks(w, m, count=3, block_sizes=[(2, 1), None])]
    [[[0, 1], [0, 1], [1, 1], [1, 1]], [0, 1]]
    """
    weights, masks, _ = _checked(weights, masks, count)
    if len(block_sizes) != len(weights):
        raise ValueError(f"`block_sizes` must give one entry per tensor ({len(weights)}). Received: {len(block_sizes)} entries.")
    blocks = []
    for i, (w, b) in enumerate(zip(weights, block_sizes)):
        if b is not None:
            b = check_block_size(b, f"block_sizes[{i}]")
            if np.ndim(w) != 2:
                raise ValueError(f"Tensor {i} has shape {np.shape(w)}; only 2-D tensors can be cut into blocks.")
        blocks.append(b)
    if count == 0:
        return [m.copy() for m in masks]
    units = [_units(np.asarray(w), m, b) for w, m, b in zip(weights, masks, blocks)]
    scores = np.concatenate([s for s, _ in units])
    alive = np.concatenate([a for _, a in units])
    candidates = np.flatnonzero(alive)
    # Every unit holds at least one alive weight, so the prefix reaching `count` lies within the
    # `count` lowest units: only those (and ties with the last of them) need a full sort.
    kth = min(count, candidates.size) - 1
    threshold = np.partition(scores[candidates], kth)[kth]
    near = candidates[scores[candidates] <= threshold]
    ranked = near[np.lexsort((near, scores[near]))]
    totals = np.r_[0, np.cumsum(alive[ranked])]
    removed = np.zeros(scores.size, dtype=bool)
    removed[ranked[: int(np.argmin(np.abs(totals - count)))]] = True
    new, offset = [], 0
    for m, (s, _), b in zip(masks, units, blocks):
        new.append(m & ~_expand(removed[offset : offset + s.size], m.shape, b))
        offset += s.size
    return new
