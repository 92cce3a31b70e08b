"""Tied and unshared building blocks, one module per idea (chapters 01, 02, 06, 07, 08).

:mod:`~shared_lib.layers.local` (convolution without sharing, and as a dense matrix; ch. 02),
:mod:`~shared_lib.layers.sets` (one encoder shared by the elements of a set or the nodes of a
graph: Deep Sets, permutation-equivariant layers, message passing; ch. 01, 02),
:mod:`~shared_lib.layers.group` (one filter shared across rotations; ch. 06),
:mod:`~shared_lib.layers.relaxed` (a looped block and a LoRA-relaxed shared stack; ch. 06),
:mod:`~shared_lib.layers.hashed` (weights shared through a hash; ch. 07),
:mod:`~shared_lib.layers.compressed` (codebook, low-rank and soft weight sharing; ch. 07),
:mod:`~shared_lib.layers.hyper` (one generator shared by many layers; ch. 08) and
:mod:`~shared_lib.layers.recursion` (one block, a per-token number of passes; ch. 08).
"""
