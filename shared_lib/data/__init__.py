"""Data that needs no download: sklearn's bundled digits and generated tasks; generation only.

One module per kind of data: :mod:`~shared_lib.data.splits` (train/test splits, digits,
batching), :mod:`~shared_lib.data.sequences` (sequence and algorithmic tasks),
:mod:`~shared_lib.data.canvas` (digits placed on a larger canvas), :mod:`~shared_lib.data.text`
(an offline corpus), :mod:`~shared_lib.data.signals` (1-D keyword signals),
:mod:`~shared_lib.data.pairs` (digit pairs and multi-task labels) and
:mod:`~shared_lib.data.conflict` (two tasks of a chosen relatedness). Training loops and plots
live elsewhere: in :mod:`shared_lib.training` and the chapters' modules.
"""

from shared_lib.data.splits import Batches, Split, balanced_subset, digits, loaders

__all__ = ["Batches", "Split", "balanced_subset", "digits", "loaders"]
