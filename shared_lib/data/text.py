"""An offline English-like corpus from a small probabilistic grammar, and LM batches (chapter 04).

Nothing is downloaded: :func:`generate_sentences` writes sentences from a hand-written lexicon
(people, animals, food, objects, places; verbs that choose what they combine with; singular and
plural agreement) with Zipf-like word frequencies, so some words are common and many are rare —
the regime in which tying a language model's input and output embeddings is said to help
(Press & Wolf, 2017; Inan et al., 2017). :func:`text_corpus` turns it into token ids and
:func:`lm_batch` samples training windows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from shared_lib._validation import check_int

__all__ = [
    "LEXICON",
    "TextCorpus",
    "Vocabulary",
    "generate_sentences",
    "lm_batch",
    "text_corpus",
]

# --------------------------------------------------------------------------------------------
# The lexicon. Nouns are singular; plurals are formed by _plural. Each list is ordered from the
# most to the least frequent word (frequencies follow 1 / rank within a list).
# --------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


def _verb_pairs(text: str) -> list[tuple[str, str]]:
    """Split "eats eat likes like" into [("eats", "eat"), ("likes", "like")]."""
    words = text.split()
    return list(zip(words[::2], words[1::2], strict=True))


_PEOPLE = _words(
    "child teacher farmer doctor baker sailor student painter singer driver "
    "king queen pilot nurse cook judge poet miner tailor hunter"
)


_ANIMALS = _words(
    "dog cat bird horse fox mouse rabbit wolf bear goat "
    "duck sheep owl frog lion tiger snake whale deer monkey"
)


_FOOD = _words(
    "bread apple soup cake cheese egg rice fish carrot pear "
    "plum cookie bean onion lemon melon grape pie nut olive"
)


_OBJECTS = _words(
    "book ball box cup hat key lamp rope chair table "
    "drum bell coin kite map shoe stone basket candle mirror"
)


_PLACES = _words(
    "house garden river forest market school village field road hill "
    "kitchen castle bridge lake cave harbor tower farm"
)


_ADJECTIVES = _words(
    "old small big little red green happy quiet brown young "
    "tall tired clever lazy bright dark strange gentle wild shiny"
)


_ADVERBS = _words("quickly slowly often never always quietly again today")


_PREPOSITIONS = _words("in near under behind beside across")


_DETERMINERS_SG = _words("the a this every")


_DETERMINERS_PL = _words("the some these many")


_CONJUNCTIONS = _words("and but because while so")


#: Verbs by what they take: (3rd-person singular, plural/base form). Ordered by frequency.
_VERBS_EAT = _verb_pairs("eats eat likes like cooks cook buys buy hates hate sells sell "
                         "wants want smells smell")  # fmt: skip


_VERBS_SEE = _verb_pairs("sees see finds find follows follow watches watch helps help "
                         "calls call knows know meets meet")  # fmt: skip


_VERBS_HOLD = _verb_pairs("has have holds hold carries carry drops drop breaks break "
                          "hides hide paints paint fixes fix")  # fmt: skip


_VERBS_INTRANSITIVE = _verb_pairs("sleeps sleep runs run sings sing waits wait jumps jump "
                                  "laughs laugh swims swim dances dance")  # fmt: skip


_VERBS_GO = _verb_pairs("walks walk goes go lives live works work plays play hides hide")


_IRREGULAR_PLURALS = {
    "child": "children", "mouse": "mice", "sheep": "sheep", "deer": "deer", "fish": "fish",
    "wolf": "wolves", "knife": "knives", "box": "boxes", "fox": "foxes", "peach": "peaches",
    "match": "matches", "bush": "bushes", "church": "churches",
}  # fmt: skip


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    return noun + "s"


#: Every word class of the grammar, in the order of the vocabulary (each class's words from the
#: most to the least frequent, nouns in the singular).
LEXICON: dict[str, tuple[str, ...]] = {
    "people": tuple(_PEOPLE),
    "animals": tuple(_ANIMALS),
    "food": tuple(_FOOD),
    "objects": tuple(_OBJECTS),
    "places": tuple(_PLACES),
    "adjectives": tuple(_ADJECTIVES),
    "adverbs": tuple(_ADVERBS),
    "prepositions": tuple(_PREPOSITIONS),
    "determiners": tuple(dict.fromkeys(_DETERMINERS_SG + _DETERMINERS_PL)),
    "conjunctions": tuple(_CONJUNCTIONS),
}


def _all_words() -> list[str]:
    words: list[str] = []
    for noun_class in ("people", "animals", "food", "objects", "places"):
        for noun in LEXICON[noun_class]:
            words += [noun, _plural(noun)]
    for cls in ("adjectives", "adverbs", "prepositions", "determiners", "conjunctions"):
        words += LEXICON[cls]
    for verbs in (_VERBS_EAT, _VERBS_SEE, _VERBS_HOLD, _VERBS_INTRANSITIVE, _VERBS_GO):
        for singular, plural in verbs:
            words += [singular, plural]
    words += ["an", "to", "."]
    return list(dict.fromkeys(words))  # de-duplicated, order kept


class _Sampler:
    """Draws words with probability proportional to 1 / rank (Zipf-like) from a list."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, items: Sequence):
        weights = [1.0 / (rank + 1) for rank in range(len(items))]
        return self.rng.choices(items, weights=weights)[0]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


def _noun_phrase(s: _Sampler, noun_class: str, plural: bool | None = None) -> tuple[list, bool]:
    """Determiner, optional adjectives, a noun of ``noun_class``; returns (words, is_plural)."""
    plural = s.chance(0.3) if plural is None else plural
    words = [s.pick(_DETERMINERS_PL if plural else _DETERMINERS_SG)]
    if s.chance(0.4):
        words.append(s.pick(_ADJECTIVES))
        if s.chance(0.15):
            words.append(s.pick(_ADJECTIVES))
    noun = s.pick(LEXICON[noun_class])
    words.append(_plural(noun) if plural else noun)
    return words, plural


def _clause(s: _Sampler) -> list[str]:
    subject_class = s.pick(["people", "animals"])
    words, plural = _noun_phrase(s, subject_class)
    kind = s.pick(["see", "eat", "hold", "go", "intransitive"])
    verbs = {"eat": _VERBS_EAT, "see": _VERBS_SEE, "hold": _VERBS_HOLD, "go": _VERBS_GO,
             "intransitive": _VERBS_INTRANSITIVE}[kind]  # fmt: skip
    singular_form, plural_form = s.pick(verbs)
    words.append(plural_form if plural else singular_form)
    if kind == "eat":
        words += _noun_phrase(s, "food")[0]
    elif kind == "see":
        words += _noun_phrase(s, s.pick(["people", "animals", "objects"]))[0]
    elif kind == "hold":
        words += _noun_phrase(s, "objects")[0]
    elif kind == "go":
        words += ["to", *_noun_phrase(s, "places", plural=False)[0]]
    if s.chance(0.3):
        words.append(s.pick(_ADVERBS))
    if s.chance(0.3):
        words += [s.pick(_PREPOSITIONS), *_noun_phrase(s, "places", plural=False)[0]]
    return words


def generate_sentences(n_sentences: int, seed: int = 0) -> list[list[str]]:
    """``n_sentences`` sentences of the grammar, each a list of words ending with ``"."``.

    A sentence is one clause, or two joined by a conjunction. Verbs agree with their subject and
    choose their objects (people eat food, hold objects, go to places); "a" becomes "an" before
    a vowel. Deterministic for a seed.

    Args:
        n_sentences: how many sentences, at least 1.
        seed: seeds the ``random.Random`` that draws every word.

    Returns:
        A list of ``n_sentences`` lists of words.

    Raises:
        TypeError: ``n_sentences`` or ``seed`` is not an int (``None`` would not repeat).
        ValueError: ``n_sentences`` is below 1.

    Examples:
        >>> from shared_lib.data.text import generate_sentences
        >>> [" ".join(words) for words in generate_sentences(2, seed=0)]
        ['the little bear finds a brown dog .', 'this rabbit eats a pie .']
    """
    check_int(n_sentences, "n_sentences", 1)
    check_int(seed, "seed")
    s = _Sampler(random.Random(seed))
    sentences = []
    for _ in range(n_sentences):
        words = _clause(s)
        if s.chance(0.25):
            words += [s.pick(_CONJUNCTIONS), *_clause(s)]
        words = [
            "an" if word == "a" and following[0] in "aeiou" else word
            for word, following in zip(words, [*words[1:], "."], strict=True)
        ]
        sentences.append([*words, "."])
    return sentences


class Vocabulary:
    """Word ↔ id mapping over a fixed list of words (no unknown token: the grammar is closed).

    Args:
        words: the words, each once; a word's id is its position in the list.

    Raises:
        ValueError: a word occurs twice (and :meth:`encode`: a word is not in the vocabulary).

    Examples:
        >>> from shared_lib.data.text import Vocabulary
        >>> vocab = Vocabulary(["the", "dog", "runs", "."])
        >>> vocab, vocab.encode(["the", "dog", "runs", "."]).tolist(), vocab.decode([1, 2])
        (Vocabulary(4 words), [0, 1, 2, 3], ['dog', 'runs'])
    """

    def __init__(self, words: Sequence[str]) -> None:
        if len(set(words)) != len(words):
            raise ValueError("words must be unique")
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Sequence[str]) -> torch.Tensor:
        """Ids of ``words`` as a 1-D int64 tensor."""
        missing = [w for w in words if w not in self.index]
        if missing:
            raise ValueError(f"words: not in the vocabulary: {sorted(set(missing))[:5]}")
        return torch.tensor([self.index[w] for w in words], dtype=torch.long)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        """Words of ``ids``."""
        return [self.words[int(i)] for i in ids]

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"


@dataclass(frozen=True)
class TextCorpus:
    """Train and validation token ids of the generated corpus, and its vocabulary.

    Attributes:
        train: 1-D int64 token ids of the training text.
        val: 1-D int64 token ids of the validation text.
        vocab: the :class:`Vocabulary` that maps them back to words.

    Examples:
        >>> import torch
        >>> from shared_lib.data.text import TextCorpus, Vocabulary
        >>> vocab = Vocabulary(["a", "b", "."])
        >>> TextCorpus(torch.tensor([0, 1, 2, 1]), torch.tensor([0, 2]), vocab)
        TextCorpus(train=4 tokens, val=2 tokens, vocab=3)
    """

    train: torch.Tensor
    val: torch.Tensor
    vocab: Vocabulary

    def __repr__(self) -> str:
        return (
            f"TextCorpus(train={len(self.train):,} tokens, val={len(self.val):,} tokens, "
            f"vocab={len(self.vocab)})"
        )


def text_corpus(train_tokens: int = 40_000, val_tokens: int = 10_000, seed: int = 0) -> TextCorpus:
    """About ``train_tokens`` training and ``val_tokens`` validation tokens of the grammar.

    Both are whole sentences, drawn from two independent streams: the validation text does not
    depend on ``train_tokens``, and a smaller training set is a prefix of a larger one (same
    ``seed``). The vocabulary is the grammar's whole lexicon, the same for every seed.

    Args:
        train_tokens: minimum number of training tokens, at least 100 (the last sentence is
            completed, so there are a few more).
        val_tokens: minimum number of validation tokens, at least 100.
        seed: the training stream uses seed ``2 * seed``, the validation stream ``2 * seed + 1``.

    Returns:
        A :class:`TextCorpus`.

    Raises:
        TypeError: ``train_tokens``, ``val_tokens`` or ``seed`` is not an int.
        ValueError: ``train_tokens`` or ``val_tokens`` is below 100.

    Examples:
        >>> from shared_lib.data.text import text_corpus
        >>> corpus = text_corpus(1_000, 500, seed=0)
        >>> corpus
        TextCorpus(train=1,002 tokens, val=503 tokens, vocab=314)
        >>> corpus.vocab.decode(corpus.train[:8])
        ['a', 'farmer', 'finds', 'a', 'dog', 'in', 'an', 'old']
    """
    for name, value in (("train_tokens", train_tokens), ("val_tokens", val_tokens)):
        check_int(value, name, 100)
    check_int(seed, "seed")
    vocab = Vocabulary(_all_words())
    streams: list[list[str]] = []
    for stream_seed, target in ((2 * seed, train_tokens), (2 * seed + 1, val_tokens)):
        rng = random.Random(stream_seed)
        stream: list[str] = []
        while len(stream) < target:
            stream += generate_sentences(1, seed=rng.randrange(2**31))[0]
        streams.append(stream)
    return TextCorpus(vocab.encode(streams[0]), vocab.encode(streams[1]), vocab)


def lm_batch(
    ids: torch.Tensor, batch_size: int, length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``length`` tokens and the same windows shifted by one (the targets).

    The next-token training batch of a language model (chapter 04): target ``t`` of a window is
    its input ``t + 1``. Window starts are drawn uniformly from ``generator``.

    Args:
        ids: 1-D token ids of a text.
        batch_size: windows per batch, at least 1.
        length: tokens per window, from 1 to ``len(ids) - 1``.
        generator: draws the window starts (seed it for a repeatable batch).

    Returns:
        ``(inputs, targets)``, both of shape ``(batch_size, length)`` and the dtype of ``ids``.

    Raises:
        TypeError: ``length`` or ``batch_size`` is not an int.
        ValueError: ``ids`` is not 1-D, ``length`` is outside ``1 .. len(ids) - 1``, or
            ``batch_size`` is below 1.

    Examples:
        On the ids 0, 1, 2, ... every target is its input plus one: the inputs shifted by one.

        >>> import torch
        >>> from shared_lib.data.text import lm_batch
        >>> inputs, targets = lm_batch(torch.arange(100), 2, 5, torch.Generator().manual_seed(0))
        >>> inputs.tolist(), targets.tolist()
        ([[34, 35, 36, 37, 38], [4, 5, 6, 7, 8]], [[35, 36, 37, 38, 39], [5, 6, 7, 8, 9]])
    """
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    check_int(length, "length", 1, len(ids) - 1)
    check_int(batch_size, "batch_size", 1)
    starts = torch.randint(0, len(ids) - length, (batch_size,), generator=generator)
    offsets = torch.arange(length)
    windows = starts[:, None] + offsets
    return ids[windows], ids[windows + 1]
