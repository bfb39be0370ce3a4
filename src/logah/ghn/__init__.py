"""Graph hypernetworks (GHN-2, GHN-3, LoGAH): architecture graph -> parameters (see docs/ghn.md).

``GHN(GHNConfig(preset=...))`` builds one; ``ghn(graphs)`` predicts every parameter of every model
(differentiable); ``ghn.predict(graph)`` streams them one tensor at a time; ``save_ghn`` /
``load_ghn`` read and write GHNs (also ``random:<preset>`` and Lightning checkpoints).
"""

from logah.config.ghn import GHN_PRESETS, GHNConfig
from logah.ghn.ghn import GHN, GHNInputError, Item, as_batch

__all__ = ["GHN", "GHNConfig", "GHNInputError", "GHN_PRESETS", "Item", "as_batch"]
