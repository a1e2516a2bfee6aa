"""search: hyperparameter search over neon models (strategies, scheduling, controller).

The package namespace stays light: ``SearchSpace``, ``minimize`` and ``Result`` only.
"""

from search.minimize import Result, minimize
from search.space import SearchSpace

__all__ = ["Result", "SearchSpace", "minimize"]
