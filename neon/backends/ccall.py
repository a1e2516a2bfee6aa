"""numba intrinsics that call C functions by address, so that compiled code calling a
library bound at run time (oneMKL, its OpenMP runtime) can be cached on disk: an address
baked into the code is only valid in the process that took it."""

from __future__ import annotations

import ctypes
from typing import Any

from llvmlite import ir
from numba.core import types
from numba.core.extending import intrinsic

__all__ = ["address", "call_int", "call_void", "pointer"]


def address(fn: Any) -> int:
    """The address of a ctypes function of a loaded library."""
    return int(ctypes.cast(fn, ctypes.c_void_p).value)


@intrinsic
def pointer(typingctx, address):
    """An integer address as a ``void*``."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(address), codegen


def _caller(result):
    """An intrinsic calling ``result f(...)`` at an integer address with the values of a
    tuple, each passed as its C type (ints of their width, float, double, void*)."""

    @intrinsic
    def call(typingctx, address, args):
        if not isinstance(address, types.Integer) or not isinstance(args, types.BaseTuple):
            return None

        def codegen(context, builder, signature, llargs):
            arg_types = signature.args[1].types
            fnty = ir.FunctionType(context.get_value_type(result),
                                   [context.get_value_type(t) for t in arg_types])
            fn = builder.inttoptr(llargs[0], fnty.as_pointer())
            out = builder.call(fn, [builder.extract_value(llargs[1], i)
                                    for i in range(len(arg_types))])
            return context.get_dummy_value() if result == types.void else out

        return result(address, args), codegen

    return call


call_void = _caller(types.void)
call_void.__doc__ = "``call_void(address, args)``: call ``void f(...)``."
call_int = _caller(types.int32)
call_int.__doc__ = "``call_int(address, args)``: call ``int f(...)``, returning its int."
