"""Small models the chapters train and draw: one per family of parameter sharing (chapter 01).

Each keeps its sharing visible: the shared module is one object, used several times.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_int

__all__ = [
    "MLP",
    "ConvStep",
    "ElmanRNN",
    "GRUClassifier",
    "MultiTaskNet",
    "SiameseNet",
    "SmallConvNet",
    "StepRNN",
]


class MLP(nn.Sequential):
    """Fully connected net ``sizes[0] → … → sizes[-1]`` with ReLU between layers; no sharing
    (chapter 01's baseline: every weight used once).

    Args:
        sizes: the widths, input first and output last (at least two).

    Raises:
        TypeError: a size is not an int.
        ValueError: fewer than two sizes, or a size below 1.

    Shape:
        - Input: ``(*, sizes[0])``.
        - Output: ``(*, sizes[-1])``.

    Examples:
        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import MLP
        >>> mlp = MLP(4, 8, 3)
        >>> mlp(torch.randn(2, 4)).shape, count_parameters(mlp)  # (4·8 + 8) + (8·3 + 3)
        (torch.Size([2, 3]), 67)
    """

    def __init__(self, *sizes: int) -> None:
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {sizes}")
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(
                nn.Linear(
                    check_int(fan_in, "sizes", minimum=1), check_int(fan_out, "sizes", minimum=1)
                )
            )
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class SmallConvNet(nn.Module):
    """Two 3×3 convolutions, global average pooling and a linear classifier (sharing across space).

    Global pooling keeps the classifier's size independent of the image size, so the same
    network runs on any input at least 3×3 (chapter 01).

    Args:
        in_channels: channels of the input images.
        channels: channels of both convolutions.
        num_classes: number of output logits.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below 1.

    Shape:
        - Input: ``(batch, in_channels, height, width)`` with height and width at least 3.
        - Output: ``(batch, num_classes)``, logits.

    Examples:
        One 3×3 kernel per channel pair, slid over every position: the same 754 parameters
        for an 8×8 and a 28×28 image.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import SmallConvNet
        >>> net = SmallConvNet(in_channels=1, channels=8, num_classes=10)
        >>> net(torch.randn(2, 1, 8, 8)).shape, net(torch.randn(2, 1, 28, 28)).shape
        (torch.Size([2, 10]), torch.Size([2, 10]))
        >>> count_parameters(net)
        754
    """

    def __init__(self, in_channels: int = 1, channels: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(
                check_int(in_channels, "in_channels", minimum=1),
                check_int(channels, "channels", minimum=1),
                3,
            ),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(channels, check_int(num_classes, "num_classes", minimum=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.classifier(self.features(images))


class ElmanRNN(nn.Module):
    """One :class:`torch.nn.RNNCell` applied at every time step, then a classifier (sharing across
    time; chapter 01). Takes token ids ``(batch, time)`` or features ``(batch, time, input_size)``.

    Args:
        input_size: features per step (the embedding size when ``vocab_size`` is given).
        hidden_size: size of the hidden state.
        num_classes: outputs of the classifier on the last state.
        vocab_size: embed token ids from a vocabulary of this size; ``None`` takes features.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below 1.

    Shape:
        - Input: ``(batch, time)`` token ids, or ``(batch, time, input_size)`` features.
        - Output: ``(batch, num_classes)``, logits from the last state.

    Examples:
        The same cell at every step: 5 or 50 steps, the same 170 parameters.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import ElmanRNN
        >>> rnn = ElmanRNN(input_size=4, hidden_size=8, num_classes=2, vocab_size=10)
        >>> rnn(torch.randint(0, 10, (3, 5))).shape, rnn(torch.randint(0, 10, (3, 50))).shape
        (torch.Size([3, 2]), torch.Size([3, 2]))
        >>> count_parameters(rnn)
        170
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_classes: int, vocab_size: int | None = None
    ) -> None:
        super().__init__()
        self.embedding = (
            nn.Embedding(check_int(vocab_size, "vocab_size", minimum=1), input_size)
            if vocab_size
            else None
        )
        self.cell = nn.RNNCell(
            check_int(input_size, "input_size", minimum=1),
            check_int(hidden_size, "hidden_size", minimum=1),
        )
        self.classifier = nn.Linear(hidden_size, check_int(num_classes, "num_classes", minimum=1))

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """Logits from the last hidden state; the cell is applied once per time step."""
        inputs = self.embedding(sequence) if self.embedding is not None else sequence
        if inputs.dim() != 3:
            raise ValueError(
                f"sequence must be (batch, time[, features]), got {tuple(sequence.shape)}"
            )
        state = inputs.new_zeros(inputs.shape[0], self.cell.hidden_size)
        for step in range(inputs.shape[1]):
            state = self.cell(inputs[:, step], state)  # the same weights at every step
        return self.classifier(state)


class SiameseNet(nn.Module):
    """One encoder applied to every input (sharing across inputs); scores a pair by distance.

    ``forward(a, b)`` returns a logit that ``a`` and ``b`` belong together. Because both inputs go
    through the same encoder and the score uses ``|f(a) - f(b)|``, it is symmetric by
    construction (chapter 01).

    Args:
        encoder: the module applied to every input.
        embedding_size: width of the encoder's output.

    Raises:
        TypeError: ``embedding_size`` is not an int.
        ValueError: ``embedding_size`` is below 1.

    Shape:
        - Input: ``a`` and ``b``, each a batch the encoder takes, ``(batch, *)``; the encoder
          must give ``(batch, embedding_size)``.
        - Output: ``(batch,)``, one logit per pair.

    Examples:
        One encoder, stored once, for both inputs: the score is symmetric.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import SiameseNet
        >>> net = SiameseNet(nn.Linear(6, 4), embedding_size=4)
        >>> a, b = torch.randn(3, 6), torch.randn(3, 6)
        >>> torch.equal(net(a, b), net(b, a)), net(a, b).shape
        (True, torch.Size([3]))
        >>> count_parameters(net)  # encoder 28 + score 5
        33
    """

    def __init__(self, encoder: nn.Module, embedding_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.score = nn.Linear(check_int(embedding_size, "embedding_size", minimum=1), 1)

    def embed(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The encoder applied to each input (two for a pair, three for a triplet, …)."""
        return [self.encoder(x) for x in inputs]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch,)`` that each pair ``(a[i], b[i])`` belongs together."""
        fa, fb = self.embed(a, b)
        return self.score((fa - fb).abs()).squeeze(-1)


class MultiTaskNet(nn.Module):
    """A shared trunk with one head per task (hard parameter sharing, Caruana 1997; chapter 01).

    ``forward(x, task)`` runs the trunk and that task's head.

    Args:
        trunk: the module every task uses.
        heads: task name → that task's head, applied to the trunk's output.

    Raises:
        ValueError: ``heads`` is empty.

    Shape:
        - Input: ``x``, a batch the trunk takes, and a task name.
        - Output: that task's head's output, e.g. ``(batch, classes_of_the_task)``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.models import MultiTaskNet
        >>> heads = {"digit": nn.Linear(8, 10), "parity": nn.Linear(8, 2)}
        >>> net = MultiTaskNet(nn.Linear(6, 8), heads)
        >>> x = torch.randn(3, 6)
        >>> net(x, "digit").shape, net(x, "parity").shape  # one trunk, two heads
        (torch.Size([3, 10]), torch.Size([3, 2]))
    """

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("heads must name at least one task")
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """``heads[task](trunk(x))``.

        Raises:
            ValueError: ``task`` has no head.
        """
        if task not in self.heads:
            raise ValueError(f"task must be one of {list(self.heads)}, got {task!r}")
        return self.heads[task](self.trunk(x))


# ---------------------------------------------------------------------------------------------
# A recurrent model whose sharing across time can be cut.


class StepRNN(nn.Module):
    """An Elman RNN whose cell at step ``t`` is ``cells[t]`` (sharing across time made visible).

    Built with one :class:`torch.nn.RNNCell` registered at every step, it is an ordinary RNN;
    :func:`shared_lib.untie` turns it into a network with a separate cell per step — the same
    function at the start, but nothing learned at one step carries over to another (chapter 03).

    Args:
        length: number of time steps (the input length is fixed).
        input_size: features per step (e.g. a one-hot vocabulary).
        hidden_size: size of the hidden state.
        num_classes: outputs of the classifier on the last state.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below 1.

    Shape:
        - Input: ``(batch, length, input_size)``.
        - Output: ``(batch, num_classes)``, logits.

    Examples:
        Five steps, one cell: untying keeps the function and multiplies the cell by five.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.small import StepRNN
        >>> from shared_lib.tying import untie
        >>> rnn = StepRNN(length=5, input_size=3, hidden_size=4, num_classes=2)
        >>> x = torch.randn(2, 5, 3)
        >>> untied = untie(rnn)
        >>> count_parameters(rnn), count_parameters(untied), torch.allclose(untied(x), rnn(x))
        (46, 190, True)
    """

    def __init__(self, length: int, input_size: int, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        check_int(length, "length", 1)
        check_int(input_size, "input_size", 1)
        cell = nn.RNNCell(input_size, check_int(hidden_size, "hidden_size", 1))
        self.cells = nn.ModuleList([cell] * length)  # one object at every step: shared weights
        self.classifier = nn.Linear(hidden_size, check_int(num_classes, "num_classes", 1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs``: ``(batch, length, input_size)``; returns logits ``(batch, num_classes)``."""
        if inputs.dim() != 3 or inputs.shape[1] != len(self.cells):
            raise ValueError(
                f"inputs must be (batch, {len(self.cells)}, features), got {tuple(inputs.shape)}"
            )
        state = inputs.new_zeros(inputs.shape[0], self.cells[0].hidden_size)
        for step, cell in enumerate(self.cells):
            # RNNCell's own formula, written with F.linear so that torch.func.vmap batches it.
            state = torch.tanh(
                F.linear(inputs[:, step], cell.weight_ih, cell.bias_ih)
                + F.linear(state, cell.weight_hh, cell.bias_hh)
            )
        return self.classifier(state)


class GRUClassifier(nn.Module):
    """One GRU cell applied at every step of a bit string, then a linear read-out of the last
    state: the same parameters for strings of any length (chapter 06).

    Args:
        hidden_size: size of the GRU's state.
        embedding_size: size of the embedding of each bit.
        num_classes: number of output logits (at least 2).

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below its minimum.

    Shape:
        - Input: ``(batch, time)`` bits, 0 or 1.
        - Output: ``(batch, num_classes)``, logits.

    Examples:
        >>> import torch
        >>> from shared_lib.models.small import GRUClassifier
        >>> model = GRUClassifier()
        >>> model(torch.randint(0, 2, (3, 5))).shape, model(torch.randint(0, 2, (3, 40))).shape
        (torch.Size([3, 2]), torch.Size([3, 2]))
    """

    def __init__(
        self, hidden_size: int = 16, embedding_size: int = 4, num_classes: int = 2
    ) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", 1)
        check_int(embedding_size, "embedding_size", 1)
        check_int(num_classes, "num_classes", 2)
        self.embed = nn.Embedding(2, embedding_size)
        self.out = nn.Linear(hidden_size, num_classes)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for ``bits`` ``(batch, time)`` with values 0/1."""
        if bits.dim() != 2:
            raise ValueError(f"bits must have shape (batch, time), got {tuple(bits.shape)}")
        return self.out(self.gru(self.embed(bits))[1][-1])


class ConvStep(nn.Module):
    """One iteration of a looped net: ``state ← tanh(conv(state) + inputs)``, each cell seeing its
    two neighbours (a width-3 convolution along the cells; chapter 06).

    The step of :class:`shared_lib.layers.relaxed.LoopedNet`: one set of weights, applied as
    many times as the loop runs.

    Args:
        width: features per cell.

    Raises:
        TypeError: ``width`` is not an int.
        ValueError: ``width`` is below 1.

    Shape:
        - Input: ``state`` and ``inputs``, both ``(batch, cells, width)``.
        - Output: ``(batch, cells, width)``, the next state.

    Examples:
        >>> import torch
        >>> from shared_lib.models.small import ConvStep
        >>> step = ConvStep(width=8)
        >>> state, inputs = torch.zeros(2, 12, 8), torch.randn(2, 12, 8)
        >>> step(step(state, inputs), inputs).shape  # the same weights at every iteration
        torch.Size([2, 12, 8])
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        check_int(width, "width", 1)
        self.conv = nn.Conv1d(width, width, 3, padding=1)

    def forward(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Next state, shape ``(batch, cells, width)`` like ``state`` and ``inputs``."""
        return torch.tanh(self.conv(state.transpose(1, 2)).transpose(1, 2) + inputs)
