"""Fixtures shared by the test folders: ``unit/`` (the core of shared_lib), ``book/`` (the
chapters' modules and notebooks) and ``site/`` (the built website and the Colab path)."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread, and then a busy machine cannot stall them in
    thread synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
