"""Models: layer stacks with a cost, trained by ``fit``."""

from neon.models.model import History, Model

__all__ = ["History", "Model"]
