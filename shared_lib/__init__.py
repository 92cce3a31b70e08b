"""shared_lib: the companion library of "Parameter Sharing — an interactive textbook".

Tied layers, counting, sharing strategies, tie-preserving checkpoints and training helpers that
every chapter imports. Importing it has no side effects: no seeding, no global flags.
"""

from shared_lib.checkpoint import LoadResult, load_checkpoint, optimizer_path, save_checkpoint
from shared_lib.counting import ParameterMemory, count_parameters, parameter_memory
from shared_lib.sharing import STRATEGIES, SharedStack, layer_assignment
from shared_lib.training import (
    History,
    autocast_for,
    benchmark,
    book_seed,
    derive_seed,
    evaluate,
    fit,
    get_device,
    seed_everything,
    synchronize,
    train_steps,
)
from shared_lib.tying import (
    BrokenTiesError,
    check_ties,
    get_parameter,
    materialize,
    preserve_ties,
    retie,
    shared_groups,
    tie,
    tie_embeddings,
    untie,
    untie_embeddings,
)

__version__ = "0.1.0"

__all__ = [
    "STRATEGIES",
    "BrokenTiesError",
    "History",
    "LoadResult",
    "ParameterMemory",
    "SharedStack",
    "autocast_for",
    "benchmark",
    "book_seed",
    "check_ties",
    "count_parameters",
    "derive_seed",
    "evaluate",
    "fit",
    "get_device",
    "get_parameter",
    "layer_assignment",
    "load_checkpoint",
    "materialize",
    "optimizer_path",
    "parameter_memory",
    "preserve_ties",
    "retie",
    "save_checkpoint",
    "seed_everything",
    "shared_groups",
    "synchronize",
    "tie",
    "tie_embeddings",
    "train_steps",
    "untie",
    "untie_embeddings",
]
