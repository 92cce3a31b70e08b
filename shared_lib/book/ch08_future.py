"""Chapter 08, *The future of parameter sharing*: a mixture of experts with and without a shared
expert, adaptive recursion depth, a hypernetwork, a weight-sharing supernet, and the relaxation
explorer's figure.

ENAS (Pham et al., 2018) made architecture search cheap by letting every candidate architecture
**inherit** its weights from one trained supergraph instead of training each from scratch:
:func:`train_supernet` trains :class:`~shared_lib.models.supernet.SupernetMLP` by sampling one
path per step, :func:`train_standalone` trains one architecture from scratch, and
:func:`kendall_tau` compares the two rankings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from shared_lib._validation import check_bool, check_float, check_instance, check_int
from shared_lib.data import Split
from shared_lib.layers.hyper import HyperMLP
from shared_lib.layers.recursion import MixtureOfRecursions
from shared_lib.models.moe import MoEClassifier, MoEConfig
from shared_lib.models.supernet import SupernetMLP
from shared_lib.plotting import PALETTE, book_style
from shared_lib.training import adam_on_random_batches, seed_everything, train_steps

__all__ = [
    "kendall_tau",
    "render_relaxed",
    "train_hyper_mlp",
    "train_moe",
    "train_recursion",
    "train_standalone",
    "train_supernet",
]


def train_supernet(
    supernet: SupernetMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 600,
    lr: float = 0.01,
    batch_size: int = 128,
    seed: int = 0,
) -> SupernetMLP:
    """Single-path training: every step samples one architecture and a mini-batch and updates
    only the weight slices that architecture uses."""
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    generator = torch.Generator().manual_seed(seed)

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        arch = supernet.sample(generator)
        return nn.functional.cross_entropy(supernet(x[rows], arch), y[rows])

    adam_on_random_batches(
        supernet.parameters(), batch_loss, len(x), steps, lr, batch_size, generator
    )
    return supernet


def train_standalone(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 300,
    lr: float = 0.01,
    batch_size: int = 128,
    seed: int = 0,
) -> nn.Module:
    """Train one network from scratch with the same mini-batch recipe as :func:`train_supernet`."""
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    generator = torch.Generator().manual_seed(seed)

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x[rows]), y[rows])

    adam_on_random_batches(model.parameters(), batch_loss, len(x), steps, lr, batch_size, generator)
    return model


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's rank correlation tau-b of two equally long sequences (ties allowed): +1 same
    order, -1 reversed, about 0 unrelated."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"a and b must have the same length >= 2, got {len(a)} and {len(b)}")
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    denominator = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) ** 0.5
    if denominator == 0:
        raise ValueError("kendall_tau is undefined when a or b is constant")
    return (concordant - discordant) / denominator


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def train_moe(
    config: MoEConfig,
    data: Split,
    seed: int,
    steps: int = 200,
    lr: float = 0.005,
    batch_size: int = 64,
    aux_weight: float = 0.01,
) -> float:
    """Train a :class:`~shared_lib.models.moe.MoEClassifier` with ``config`` on ``data`` and
    return its test accuracy.

    Adam on mini-batches of ``batch_size`` random training rows (drawn by a generator seeded
    with ``seed``), cross-entropy plus ``aux_weight`` times the layer's load-balancing loss.
    Chapter 08 compares top-2 routing with one shared expert plus top-1 routing.
    """
    check_instance(data, "data", Split, "shared_lib.data.Split")
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    check_float(aux_weight, "aux_weight", 0.0)
    seed_everything(seed)
    net = MoEClassifier(config, data.x_train.shape[1], int(data.y_train.max()) + 1)
    generator = torch.Generator().manual_seed(seed)

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(net(data.x_train[rows]), data.y_train[rows])
        return loss + aux_weight * net.moe.aux_loss

    adam_on_random_batches(
        net.parameters(), batch_loss, len(data.x_train), steps, lr, batch_size, generator
    )
    return _accuracy(net, data.x_test, data.y_test)


def train_hyper_mlp(
    embedding_dim: int | None,
    data: Split,
    seed: int,
    steps: int = 250,
    lr: float = 0.005,
    batch_size: int = 64,
) -> tuple[float, HyperMLP]:
    """Train a :class:`~shared_lib.layers.hyper.HyperMLP` (``embedding_dim=None``: unshared
    hidden layers) on ``data`` with the mini-batch recipe of :func:`train_standalone`; return its
    test accuracy and the trained network (chapter 08's hypernetwork experiment)."""
    check_instance(data, "data", Split, "shared_lib.data.Split")
    seed_everything(seed)
    net = HyperMLP(embedding_dim, data.x_train.shape[1], out_features=int(data.y_train.max()) + 1)
    train_standalone(net, data.x_train, data.y_train, steps, lr, batch_size, seed)
    return _accuracy(net, data.x_test, data.y_test), net


def _check_task(value: object, argument: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not (isinstance(value, tuple) and len(value) == 3):
        raise TypeError(f"{argument} must be a tuple (x, k, y) from iterated_map_task")
    return value


def _fit_recursion(
    x: torch.Tensor,
    k: torch.Tensor,
    y: torch.Tensor,
    max_depth: int,
    seed: int,
    depth: int | None,
    tag_aware: bool,
    steps: int,
    lr: float,
    router_lr: float,
    start_depth: int,
) -> tuple[float, nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """One training run of :func:`train_recursion`: (final training loss, model, its forward)."""
    width = x.shape[1]
    seed_everything(seed)
    tag_width = max_depth if tag_aware else 0
    block = nn.Sequential(nn.Linear(width + tag_width, width, bias=False), nn.Tanh())

    def tag(difficulty: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(difficulty - 1, max_depth).float()

    if depth is None:
        mor = MixtureOfRecursions(block, max_depth, width + max_depth, start_depth=start_depth)
        model: nn.Module = mor
        groups = [
            {"params": list(block.parameters())},
            {"params": list(mor.router.parameters()), "lr": router_lr},
        ]

        def run(inputs: torch.Tensor, difficulty: torch.Tensor) -> torch.Tensor:
            return mor(inputs, torch.cat([inputs, tag(difficulty)], 1))

    else:
        model = block
        groups = [{"params": list(block.parameters())}]

        def run(inputs: torch.Tensor, difficulty: torch.Tensor) -> torch.Tensor:
            extra = [tag(difficulty)] if tag_aware else []
            for _ in range(depth):
                inputs = block(torch.cat([inputs, *extra], 1))
            return inputs

    optimizer = torch.optim.Adam(groups, lr=lr)
    # Full-batch steps; for MoR the loss is on the soft mix of depths.
    train_steps(optimizer, range(steps), lambda step: nn.functional.mse_loss(run(x, k), y))
    model.eval()
    with torch.no_grad():  # the final training loss, in eval mode (MoR: hard routing)
        final = nn.functional.mse_loss(run(x, k), y).item()
    return final, model, run


def train_recursion(
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    max_depth: int,
    seed: int,
    depth: int | None = None,
    steps: int = 300,
    lr: float = 0.02,
    router_lr: float | None = None,
    tag_aware: bool = False,
    restarts: int = 1,
    start_depths: Sequence[int] = (1,),
) -> tuple[dict[str, float | int | list[float]], nn.Module]:
    """Train one shared block ``tanh(W h)`` on an
    :func:`~shared_lib.data.sequences.iterated_map_task` and measure it.

    ``depth=None``: a :class:`~shared_lib.layers.recursion.MixtureOfRecursions` (router
    started at ``start_depths[0]`` passes; learning rate ``router_lr``, default ``lr``) whose
    router sees each token and its one-hot difficulty ``k`` and chooses 1 to ``max_depth``
    passes per token (soft mix in training, hard choice on ``test``). ``depth=d``: the same
    block run ``d`` times for every token; with ``tag_aware=True`` the block reads the
    one-hot tag too at every pass, ``tanh(W [h; tag])``, so that the fixed-depth baseline
    gets the information the router gets. Full-batch Adam on the mean squared error,
    ``steps`` steps.

    ``restarts``: train from that many initialisations (seeds ``seed``, ``seed + 1``, ...),
    restart ``r`` with the router started at ``start_depths[r % len(start_depths)]`` passes,
    and keep the one with the lowest final training loss (chapter 08: a run can stall in a
    local minimum where the block learns ``f∘f`` instead of ``f``; starting the router at
    another depth changes which compromise the block fits first).
    ``train``/``test`` are ``(x, k, y)`` triples (chapter 08's adaptive-depth experiment).

    Returns ``(results, model)``; ``results`` holds the test ``"mse"``, the ``"mean depth"``,
    the block ``"calls"``, the ``"agreement"`` (fraction of tokens given exactly ``k``
    passes), the mean passes ``"depth by k"`` for ``k = 1..max_depth``, and the test
    ``"restart mse"`` and final ``"restart train loss"`` of every restart.

    Examples:
        >>> from shared_lib.data.sequences import iterated_map_task
        >>> task = iterated_map_task(64, width=3, max_depth=2, seed=0)
        >>> results, _ = train_recursion(task, task, 2, seed=0, depth=1, steps=5, restarts=2)
        >>> results["mean depth"], len(results["restart mse"])
        (1.0, 2)
    """
    (x, k, y), (x_test, k_test, y_test) = _check_task(train, "train"), _check_task(test, "test")
    check_int(max_depth, "max_depth", 1)
    check_int(steps, "steps", 1)
    check_int(restarts, "restarts", 1)
    check_bool(tag_aware, "tag_aware")
    if router_lr is None:
        router_lr = lr
    check_float(router_lr, "router_lr", 0.0, low_inclusive=False)
    if depth is not None:
        check_int(depth, "depth", 1)
    check_instance(start_depths, "start_depths", (tuple, list), "a tuple or list of ints")
    if not start_depths:
        raise ValueError("start_depths must name at least one depth")
    for start in start_depths:
        check_int(start, "start_depths", 1, max_depth)
    settings = (depth, tag_aware, steps, lr, router_lr)
    runs = [
        _fit_recursion(x, k, y, max_depth, seed + r, *settings, start_depths[r % len(start_depths)])
        for r in range(restarts)
    ]
    restart_mse = []
    with torch.no_grad():
        for _, _, run in runs:
            restart_mse.append(nn.functional.mse_loss(run(x_test, k_test), y_test).item())
    best = min(range(restarts), key=lambda r: runs[r][0])
    _, model, run = runs[best]
    with torch.no_grad():
        error = nn.functional.mse_loss(run(x_test, k_test), y_test).item()
    if depth is None:
        chosen, calls = model.last_depths, model.block_calls
    else:
        chosen, calls = torch.full_like(k_test, depth), len(x_test) * depth
    depths = chosen.float()
    return {
        "mse": error,
        "mean depth": depths.mean().item(),
        "calls": calls,
        "agreement": (chosen == k_test).float().mean().item(),
        "depth by k": [depths[k_test == d].mean().item() for d in range(1, max_depth + 1)],
        "restart mse": restart_mse,
        "restart train loss": [loss for loss, _, _ in runs],
    }, model


def render_relaxed(
    rank: int, params: Mapping[int | str, int], accuracy: Mapping[int | str, float]
) -> Figure:
    """The relaxation explorer's frame (chapter 08): stored parameters of the shared (rank 0),
    rank-``rank`` and unshared stacks, and accuracy against stored parameters for every rank.

    ``params`` and ``accuracy`` are keyed by rank (ints, 0 included) and ``"unshared"``.
    """
    ranks = sorted(key for key in params if key != "unshared")
    if rank not in ranks:
        raise ValueError(f"rank must be one of {ranks}, got {rank!r}")
    missing = [key for key in [*ranks, "unshared"] if key not in accuracy]
    if 0 not in params or "unshared" not in params or missing:
        raise ValueError(f"params and accuracy need rank 0 and 'unshared' (missing: {missing})")
    with book_style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.2))
        names = ["shared\n(rank 0)", f"rank {rank}", "unshared"]
        counts = [params[0], params[rank], params["unshared"]]
        left.bar(names, counts, color=[PALETTE[5], PALETTE[0], PALETTE[2]])
        for i, c in enumerate(counts):
            left.text(i, c, str(c), ha="center", va="bottom", fontsize=10)
        left.set_ylabel("stored parameters")
        left.set_ylim(0, max(params.values()) * 1.15)
        right.plot([params[r] for r in ranks], [accuracy[r] for r in ranks], "o-",
                   color=PALETTE[0], label=f"relaxed, ranks {ranks[0]}-{ranks[-1]}")  # fmt: skip
        right.plot([params["unshared"]], [accuracy["unshared"]], "*", markersize=12,
                   color=PALETTE[2], label="unshared")  # fmt: skip
        right.plot([params[rank]], [accuracy[rank]], "o", markersize=12, mfc="none",
                   color="k", label=f"rank {rank}")  # fmt: skip
        right.set_xlabel("stored parameters of the stack")
        right.set_ylabel("test agreement with the teacher")
        right.legend(fontsize=10, loc="lower right")
        fig.tight_layout()
    return fig
