"""Adaptive recursion depth: one shared block, a per-token number of passes (chapter 08).

After Bae et al. (2025), "Mixture-of-Recursions: Learning Dynamic Recursive Depths for Adaptive
Token-Level Computation": a single block is applied up to ``max_recursions`` times, and a router
decides, token by token, how many passes each one gets. The weights are shared across depth (as
in a looped or Universal Transformer); what varies per token is only the compute.

:class:`MixtureOfRecursions` trains with a *soft* choice (the output is the router-weighted
mixture of the states after 1, 2, ... passes, so the router gets gradients) and runs with a
*hard* one (each token takes its most probable depth and leaves the loop there; tokens that have
left cost nothing). :func:`shared_lib.data.sequences.iterated_map_task` is a task built for it:
the target of a token is a fixed map applied ``k`` times, with ``k`` (its difficulty) varying
from token to token.
"""

from __future__ import annotations

import torch
from torch import nn

from shared_lib._validation import check_bool, check_float, check_int, check_module

__all__ = [
    "MixtureOfRecursions",
]


class MixtureOfRecursions(nn.Module):
    """A shared ``block`` applied 1 to ``max_recursions`` times, the depth chosen per token
    (chapter 08).

    Args:
        block: the shared step, ``block(state) -> state`` of the same shape ``(n, features)``.
        max_recursions: the most passes a token may take.
        router_features: size of the router's input (the ``router_input`` of ``forward``,
            by default the state itself).
        start_depth: if given, the router's bias starts at ``start_bias`` for this depth (and 0
            for the others), so training begins by sending tokens through that many passes;
            ``None`` starts from a uniform choice. Which start works depends on the task: in
            chapter 08 no single start solved every map, so the chapter trains from several
            starts and keeps the best by training loss (its rates are in the evidence ledger).
        start_bias: the initial logit advantage of ``start_depth``.

    In training mode ``forward`` returns ``Σ_d p_d(x) · h_d`` (``h_d``: state after ``d``
    passes, ``p``: the router's softmax) and stores the differentiable mean expected depth in
    ``expected_depth``, for a compute penalty. In eval mode (or ``hard=True``) each token
    takes ``argmax p`` passes; ``last_depths`` holds them (1-based) and
    ``block_calls`` the number of token-passes actually computed.

    Raises:
        TypeError: ``block`` is not an ``nn.Module``, a size is not an int, or ``start_bias``
            is not a real number.
        ValueError: a size is below 1, ``start_depth`` exceeds ``max_recursions``, or
            ``start_bias`` is not finite.

    Shape:
        - Input: ``x`` of shape ``(tokens, features)``; ``router_input`` (optional) of shape
          ``(tokens, router_features)``.
        - Output: ``(tokens, features)``.

    Examples:
        One block for every depth: the parameters are the block's and the router's, however
        many passes a token takes.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.recursion import MixtureOfRecursions
        >>> _ = torch.manual_seed(0)
        >>> block = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        >>> mor = MixtureOfRecursions(block, max_recursions=3, router_features=8, start_depth=1)
        >>> count_parameters(mor) == count_parameters(block) + count_parameters(mor.router)
        True
        >>> x = torch.randn(5, 8)
        >>> mor(x).shape, mor.block_calls  # training: every token through all 3 passes
        (torch.Size([5, 8]), 15)
        >>> _ = mor.eval()(x)
        >>> mor.last_depths.tolist(), mor.block_calls  # eval: each token leaves at its depth
        ([1, 1, 1, 1, 1], 5)
    """

    def __init__(
        self,
        block: nn.Module,
        max_recursions: int,
        router_features: int,
        start_depth: int | None = None,
        start_bias: float = 4.0,
    ) -> None:
        super().__init__()
        self.block = check_module(block, "block")
        self.max_recursions = check_int(max_recursions, "max_recursions", 1)
        self.router = nn.Linear(check_int(router_features, "router_features", 1), max_recursions)
        start_bias = check_float(start_bias, "start_bias")
        if start_depth is not None:
            check_int(start_depth, "start_depth", 1)
            if start_depth > max_recursions:
                raise ValueError(
                    f"start_depth must be <= max_recursions ({max_recursions}), got {start_depth}"
                )
            with torch.no_grad():
                self.router.bias.zero_()
                self.router.bias[start_depth - 1] = start_bias
        self.expected_depth: torch.Tensor | None = None
        self.last_depths: torch.Tensor | None = None
        self.block_calls = 0

    def depth_probabilities(self, router_input: torch.Tensor) -> torch.Tensor:
        """``(n, max_recursions)``: the router's probability of 1, 2, ... passes per token.

        Args:
            router_input: ``(n, router_features)``, the router's input for ``n`` tokens.
        """
        return self.router(router_input).softmax(dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        router_input: torch.Tensor | None = None,
        hard: bool | None = None,
    ) -> torch.Tensor:
        """The tokens after their passes through the shared block.

        Args:
            x: ``(tokens, features)``, the initial state.
            router_input: ``(tokens, router_features)`` for the router; ``None`` routes on ``x``.
            hard: take each token's most probable depth (``True``) or mix the depths by their
                probabilities (``False``); ``None`` means hard in eval mode only.

        Returns:
            ``(tokens, features)``.

        Raises:
            TypeError: ``hard`` is neither a bool nor ``None``.
            ValueError: ``x`` is not 2-D, or ``router_input`` has another number of rows.
        """
        if hard is not None:
            check_bool(hard, "hard")
        if x.dim() != 2:
            raise ValueError(f"x must be (tokens, features), got shape {tuple(x.shape)}")
        router_input = x if router_input is None else router_input
        if router_input.shape[0] != x.shape[0]:
            raise ValueError("router_input must have one row per token of x")
        hard = (not self.training) if hard is None else hard
        probabilities = self.depth_probabilities(router_input)
        depths = torch.arange(1, self.max_recursions + 1, device=x.device, dtype=x.dtype)
        if not hard:
            self.expected_depth = (probabilities * depths).sum(-1).mean()
            state, out = x, torch.zeros_like(x)
            for d in range(self.max_recursions):
                state = self.block(state)  # the same weights at every pass
                out = out + probabilities[:, d : d + 1] * state
            self.block_calls = x.shape[0] * self.max_recursions
            return out
        chosen = probabilities.argmax(-1) + 1
        self.last_depths = chosen.detach()
        state, calls = x, 0
        for d in range(1, self.max_recursions + 1):
            active = chosen >= d  # tokens that have not left the loop yet
            if not active.any():
                break
            state = state.clone()
            state[active] = self.block(state[active])
            calls += int(active.sum())
        self.block_calls = calls
        return state

    def extra_repr(self) -> str:
        return f"max_recursions={self.max_recursions}"
