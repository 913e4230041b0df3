"""pft-adapters: preference-paired LoRA adapter zoos.

One LoRA adapter per value pole, trained together on paired data, plus a mixing
head; at inference a preference vector weights the pole adapters exactly.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .errors import PFTError  # noqa: E402
from .values import Dimension, Pole, ValueSpace, load_pairs  # noqa: E402

if TYPE_CHECKING:
    from .mix import MixedModel, load_mixed
    from .scorer import ScorerModel
    from .zoo import Zoo

_NEED_TORCH = {"Zoo": "zoo", "MixedModel": "mix", "load_mixed": "mix", "ScorerModel": "scorer"}

__all__ = ["Dimension", "MixedModel", "PFTError", "Pole", "ScorerModel", "ValueSpace", "Zoo", "__version__",
           "load_mixed", "load_pairs"]


def __getattr__(name: str) -> object:
    """The names that need torch (seconds to import), imported on first use: what needs only errors or
    value spaces, such as the CLI's --help, starts without it."""
    if name not in _NEED_TORCH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_NEED_TORCH[name]}", __name__), name)
