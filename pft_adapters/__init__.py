"""pft-adapters: preference-paired LoRA adapter zoos.

One LoRA adapter per value pole, trained together on paired data, plus a mixing
head; at inference a preference vector weights the pole adapters exactly.
"""

__version__ = "0.1.0"

from .errors import PFTError  # noqa: E402
from .values import Dimension, Pole, ValueSpace, load_pairs  # noqa: E402
from .zoo import Zoo  # noqa: E402
from .mix import MixedModel, load_mixed  # noqa: E402
from .scorer import ScorerModel  # noqa: E402

__all__ = ["Dimension", "MixedModel", "PFTError", "Pole", "ScorerModel", "ValueSpace", "Zoo", "__version__",
           "load_mixed", "load_pairs"]
