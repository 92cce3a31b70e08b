"""Tests of shared_lib.data.text: the generated corpus, its vocabulary and LM batches."""

from __future__ import annotations

import pytest
import torch

from shared_lib.data.text import LEXICON, Vocabulary, generate_sentences, lm_batch, text_corpus


def test_sentences_are_deterministic_and_end_with_a_full_stop():
    first = generate_sentences(50, seed=3)
    assert first == generate_sentences(50, seed=3)
    assert first != generate_sentences(50, seed=4)
    assert all(sentence[-1] == "." and "." not in sentence[:-1] for sentence in first)


def test_grammar_agrees_subject_and_verb():
    from shared_lib.data import text

    verbs = (text._VERBS_EAT + text._VERBS_SEE + text._VERBS_HOLD + text._VERBS_GO
             + text._VERBS_INTRANSITIVE)  # fmt: skip
    singular_verbs = {s for s, _ in verbs}
    plural_verbs = {p for _, p in verbs}
    subjects = LEXICON["people"] + LEXICON["animals"]
    singular = {n for n in subjects if text._plural(n) != n}
    plural = {text._plural(n) for n in singular}
    checked = 0
    for sentence in generate_sentences(300, seed=0):
        noun = next(i for i, w in enumerate(sentence) if w in singular | plural | set(subjects))
        if sentence[noun] in singular:
            assert sentence[noun + 1] in singular_verbs, sentence
            checked += 1
        elif sentence[noun] in plural:
            assert sentence[noun + 1] in plural_verbs, sentence
            checked += 1
    assert checked > 250


def test_corpus_sizes_prefix_and_fixed_validation():
    small, large = text_corpus(1_000, 500, seed=0), text_corpus(4_000, 500, seed=0)
    assert len(small.train) >= 1_000 and len(small.val) >= 500
    assert torch.equal(small.val, large.val)  # validation does not depend on the train size
    assert torch.equal(small.train, large.train[: len(small.train)])  # a prefix
    assert len(small.vocab) == len(large.vocab) > 100
    assert small.train.dtype == torch.long and int(small.train.max()) < len(small.vocab)
    assert not torch.equal(text_corpus(1_000, 500, seed=1).val, small.val)


def test_word_frequencies_are_skewed():
    corpus = text_corpus(20_000, 100, seed=0)
    counts = torch.bincount(corpus.train, minlength=len(corpus.vocab)).sort(descending=True)[0]
    assert counts[0] > 20 * counts[len(counts) // 2]  # a few frequent words, many rare ones


def test_vocabulary_round_trip_and_errors():
    vocab = Vocabulary(["a", "b", "."])
    assert vocab.decode(vocab.encode(["b", ".", "a"])) == ["b", ".", "a"]
    assert len(vocab) == 3 and "3 words" in repr(vocab)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode(["z"])
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])


def test_lm_batch_targets_are_shifted_inputs():
    ids = torch.arange(100)
    inputs, targets = lm_batch(ids, 4, 10, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (4, 10)
    assert torch.equal(targets, inputs + 1)
    with pytest.raises(ValueError, match="length"):
        lm_batch(ids, 4, 100, torch.Generator())
    with pytest.raises(ValueError, match="1-D"):
        lm_batch(ids.view(10, 10), 4, 3, torch.Generator())
    with pytest.raises(ValueError, match="batch_size"):
        lm_batch(ids, 0, 10, torch.Generator())
    with pytest.raises(TypeError, match="batch_size"):
        lm_batch(ids, 4.0, 10, torch.Generator())


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="train_tokens"):
        text_corpus(10)
    with pytest.raises(ValueError, match="n_sentences"):
        generate_sentences(0)
    with pytest.raises(TypeError, match="n_sentences"):
        generate_sentences(2.0)
    with pytest.raises(TypeError, match="val_tokens"):
        text_corpus(1_000, None)
