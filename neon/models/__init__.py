"""Models: layer stacks with a cost, trained by ``fit``."""

from typing import Any

from neon.models.model import History, Model
from neon.registry import Registry

# ``model: {type: NAME, ...}`` in a model YAML (a plain layer stack has no type)
MODEL_TYPES: Registry[Model] = Registry("model type")

from neon.models.autoencoder import Autoencoder  # noqa: E402
from neon.models.rbm import DBN, RBM  # noqa: E402

MODEL_TYPES.register("autoencoder")(Autoencoder)
MODEL_TYPES.register("rbm")(RBM)
MODEL_TYPES.register("dbn")(DBN)


def build_typed_model(spec: Any, be: Any = None, name: str | None = None,
                      config: dict | None = None) -> Model:
    """A model from a ``model:`` section with ``type:`` (autoencoder, rbm, dbn)."""
    context: dict[str, Any] = {"be": be, "config": config}
    if name is not None:
        context["name"] = name
    return MODEL_TYPES.build(spec, where="model", **context)


__all__ = ["DBN", "MODEL_TYPES", "RBM", "Autoencoder", "History", "Model", "build_typed_model"]
