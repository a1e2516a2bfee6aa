"""Transforms: activation functions and costs."""

from neon.transforms.activation import ACTIVATIONS, Activation, build_activation
from neon.transforms.cost import COSTS, Cost, build_cost

__all__ = ["ACTIVATIONS", "COSTS", "Activation", "Cost", "build_activation", "build_cost"]
