"""Small language models with optional input/output weight tying (chapter 04).

Both read tokens through an embedding and score the next token with an output layer. With
``tie_embeddings=True`` the output layer's weight *is* the embedding matrix — one
``(vocab, width)`` tensor used to read tokens and to score them (Press & Wolf, 2017; Inan et al.,
2017) — which needs the last hidden width to equal the embedding width.

- :class:`NGramLanguageModel`: a feed-forward model of the last few tokens (Bengio et al.,
  2003), parallel over time and therefore quick to train on a CPU; the chapter trains it.
- :class:`LSTMLanguageModel`: the recurrent model of Press & Wolf and Inan et al.; the chapter
  counts it at their sizes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_bool, check_float, check_int

__all__ = ["LSTMLanguageModel", "NGramLanguageModel"]


@torch.no_grad()
def _reset_embedding_and_output(model: nn.Module) -> None:
    """Uniform(±0.1) embedding, and output weights unless tied to it; zero output bias."""
    nn.init.uniform_(model.embedding.weight, -0.1, 0.1)
    if not model.tie_embeddings:
        nn.init.uniform_(model.output.weight, -0.1, 0.1)
    nn.init.zeros_(model.output.bias)


class NGramLanguageModel(nn.Module):
    """Feed-forward LM: the embeddings of the last ``context`` tokens → tanh layer → vocabulary
    (chapter 04).

    Position t sees tokens t - context + 1 … t (zero vectors before the start of the window),
    so one call scores every position of a ``(batch, time)`` batch at once.

    Args:
        vocab_size: number of tokens V.
        width: embedding size = hidden size d.
        context: number of tokens the prediction depends on.
        tie_embeddings: use the embedding matrix as the output layer's weight (saves V·d).

    Raises:
        TypeError: a size is not an int, or ``tie_embeddings`` is not a bool.
        ValueError: a size is below 1.

    Shape:
        - Input: ``(batch, time)`` token ids.
        - Output: ``(batch, time, vocab_size)`` next-token logits.

    Examples:
        The tie: one ``(50, 16)`` matrix reads and scores the tokens, 800 parameters saved.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.lm import NGramLanguageModel
        >>> from shared_lib.tying import shared_groups
        >>> tied = NGramLanguageModel(50, width=16, context=4)
        >>> untied = NGramLanguageModel(50, width=16, context=4, tie_embeddings=False)
        >>> count_parameters(tied), count_parameters(untied), shared_groups(tied)
        (1890, 2690, [['embedding.weight', 'output.weight']])
        >>> tied(torch.randint(0, 50, (2, 9))).shape
        torch.Size([2, 9, 50])
    """

    def __init__(
        self, vocab_size: int, width: int = 48, context: int = 4, tie_embeddings: bool = True
    ) -> None:
        super().__init__()
        check_int(vocab_size, "vocab_size", minimum=1)
        check_int(width, "width", minimum=1)
        self.context = check_int(context, "context", minimum=1)
        self.tie_embeddings = check_bool(tie_embeddings, "tie_embeddings")
        self.embedding = nn.Embedding(vocab_size, width)
        self.hidden = nn.Linear(context * width, width)
        self.output = nn.Linear(width, vocab_size)
        if tie_embeddings:
            # Weight tying: the output layer scores token v with the same vector that reads it.
            self.output.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(±0.1) embedding and output weights, zero output bias."""
        _reset_embedding_and_output(self)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids``: (batch, time) token ids → (batch, time, vocab) next-token logits."""
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape (batch, time), got {tuple(ids.shape)}")
        batch, length = ids.shape
        embedded = F.pad(self.embedding(ids), (0, 0, self.context - 1, 0))  # zeros before t=0
        windows = embedded.unfold(1, self.context, 1)  # (batch, time, width, context)
        windows = windows.transpose(2, 3).reshape(batch, length, -1)  # oldest token first
        return self.output(torch.tanh(self.hidden(windows)))

    def extra_repr(self) -> str:
        return f"context={self.context}, tie_embeddings={self.tie_embeddings}"


class LSTMLanguageModel(nn.Module):
    """Embedding → LSTM → dropout → Linear to the vocabulary; ``forward(ids)`` gives logits
    (chapter 04).

    Args:
        vocab_size: number of tokens V.
        width: embedding size = LSTM hidden size d.
        num_layers: stacked LSTM layers.
        dropout: dropout on the embeddings and on the LSTM output, in ``[0, 1)``.
        tie_embeddings: use the embedding matrix as the output layer's weight (saves V·d).

    Raises:
        TypeError: a size is not an int, ``dropout`` not a real number, or ``tie_embeddings``
            not a bool.
        ValueError: a size is below 1, or ``dropout`` is outside ``[0, 1)``.

    Shape:
        - Input: ``(batch, time)`` token ids.
        - Output: ``(batch, time, vocab_size)`` next-token logits.

    Examples:
        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.lm import LSTMLanguageModel
        >>> tied = LSTMLanguageModel(50, width=16)
        >>> untied = LSTMLanguageModel(50, width=16, tie_embeddings=False)
        >>> tied.output.weight is tied.embedding.weight
        True
        >>> count_parameters(tied), count_parameters(untied)
        (3026, 3826)
        >>> tied(torch.randint(0, 50, (2, 9))).shape
        torch.Size([2, 9, 50])
    """

    def __init__(
        self,
        vocab_size: int,
        width: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        check_int(vocab_size, "vocab_size", minimum=1)
        check_int(width, "width", minimum=1)
        check_int(num_layers, "num_layers", minimum=1)
        check_float(dropout, "dropout", 0.0, 1.0, high_inclusive=False)
        self.tie_embeddings = check_bool(tie_embeddings, "tie_embeddings")
        self.embedding = nn.Embedding(vocab_size, width)
        self.lstm = nn.LSTM(width, width, num_layers=num_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(width, vocab_size)
        if tie_embeddings:
            # Weight tying: the output layer scores token v with the same vector that reads it.
            self.output.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(±0.1) embeddings (as in Press & Wolf's and Zaremba et al.'s code), zero output
        bias; the LSTM keeps PyTorch's default initialisation."""
        _reset_embedding_and_output(self)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids``: (batch, time) token ids → (batch, time, vocab) next-token logits."""
        if ids.dim() != 2:
            raise ValueError(f"ids must have shape (batch, time), got {tuple(ids.shape)}")
        hidden, _ = self.lstm(self.dropout(self.embedding(ids)))
        return self.output(self.dropout(hidden))

    def extra_repr(self) -> str:
        return f"tie_embeddings={self.tie_embeddings}"
