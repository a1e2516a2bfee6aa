"""Recurrent layers over sequences: simple RNN, LSTM and GRU with backpropagation through time.

Inputs are batches of sequences (N, T, F); outputs are (N, T, H) with ``return_sequences``
(default) or the last step's state (N, H). ``reverse: true`` reads the sequence from its end
(outputs stay aligned with the input's time axis); ``truncate: k`` truncates
backpropagation through time: the state handed from one chunk of k steps to the next (in
processing order) is treated as a constant, so no gradient crosses chunk boundaries.
Layers stack: each one's (T, H) output is the next one's input.

Computation is time-major inside the layer: the input projections of all time steps are one
GEMM (``(T*N, F) @ (F, G*H)``), the recurrent projection is one GEMM per step accumulated into
that step's gate rows, and the weight gradients are again one GEMM each over all steps. The
elementwise cell work goes through backend primitives (``be.lstm_cell_fprop/bprop``) that
fused kernels implement; every stored state is rounded to the storage format.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neon.errors import ConfigError
from neon.initializers import INITIALIZERS, Initializer, build_initializer
from neon.layers.layer import LAYERS, Layer
from neon.transforms.activation import Activation, build_activation

__all__ = ["GRU", "LSTM", "Orthogonal", "Recurrent", "SimpleRNN"]


@INITIALIZERS.register("orthogonal")
class Orthogonal(Initializer):
    """Orthogonal matrices (Saxe et al. 2014) times ``gain``; (H, G*H) recurrent weights get
    one orthogonal H x H block per gate."""

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def __call__(self, be: Any, shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        rows, cols = int(shape[0]), int(math.prod(shape[1:]))
        blocks = cols // rows if cols % rows == 0 else 1
        width = cols // blocks
        out = np.empty((rows, cols))
        for b in range(blocks):
            a = be.rng.standard_normal((max(rows, width), min(rows, width)))
            q, r = np.linalg.qr(a)
            q *= np.sign(np.diag(r))
            out[:, b * width:(b + 1) * width] = q if rows >= width else q.T
        return be.array(self.gain * out.reshape(shape))


class Recurrent(Layer):
    """Base class: shapes, parameters, time-major layout, direction, truncation, outputs.

    Parameters: ``W`` (F, G*H) input weights, ``U`` (H, G*H) recurrent weights and ``b``
    (G*H,) with G gate blocks of width H = ``nout``. ``init_state`` may hold host arrays
    ``{"h": (N, H)[, "c": (N, H)]}`` used instead of zeros as the state before the first
    processed step (tests, stateful use); it is treated as a constant.
    """

    ngates = 1
    state_names: tuple[str, ...] = ("h",)

    def __init__(
        self,
        nout: int,
        init: str | dict | float | Initializer = "glorot",
        init_inner: str | dict | float | Initializer = "orthogonal",
        bias: float = 0.0,
        reverse: bool = False,
        return_sequences: bool = True,
        truncate: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if nout < 1:
            raise ValueError(f"nout must be >= 1, got {nout}")
        if truncate is not None and truncate < 1:
            raise ValueError(f"truncate must be >= 1 steps, got {truncate}")
        self.nout = int(nout)
        self.init = build_initializer(init)
        self.init_inner = build_initializer(init_inner)
        self.bias = float(bias)
        self.reverse = bool(reverse)
        self.return_sequences = bool(return_sequences)
        self.truncate = int(truncate) if truncate else None
        self.init_state: dict[str, Any] | None = None

    # ----------------------------------------------------------------- set-up
    def configure(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        super().configure(in_shape)
        if len(self.in_shape) != 2:
            raise ConfigError(
                f"{self.registry_name} needs sequences (time, features) per example, got "
                f"{self.in_shape}: use an embedding for integer ids or a sequence dataset "
                "(e.g. digits with sequence: true)", key=self.name)
        self.nsteps, self.nin = self.in_shape
        h = self.nout
        self.out_shape = (self.nsteps, h) if self.return_sequences else (h,)
        return self.out_shape

    def allocate(self, be: Any) -> None:
        super().allocate(be)
        width = self.ngates * self.nout
        self.W = self.add_param("W", self.init(be, (self.nin, width), self.nin, self.nout))
        self.U = self.add_param("U", self.init_inner(be, (self.nout, width), self.nout,
                                                     self.nout))
        self.b = self.add_param("b", be.quantize(self.initial_bias(be)), decay=False)

    def initial_bias(self, be: Any) -> Any:
        return be.full((self.ngates * self.nout,), self.bias)

    # ----------------------------------------------------------------- helpers
    def carries(self, s: int) -> bool:
        """Whether gradient flows from processing step ``s`` back into step ``s - 1``."""
        return s > 0 and (self.truncate is None or s % self.truncate != 0)

    def _time_major(self, x: Any, key: str, width: int) -> Any:
        """(T, N, width) copy of batch-major ``x`` in processing order."""
        n, t = x.shape[0], x.shape[1]
        out = self.buffer(key, (t, n, width))
        src = x[:, ::-1] if self.reverse else x
        out[...] = src.transpose(1, 0, 2)
        return out

    def _batch_major(self, tm: Any, key: str) -> Any:
        """(N, T, width) copy of a time-major array in processing order (inverse of above)."""
        t, n, width = tm.shape
        out = self.buffer(key, (n, t, width))
        src = tm[::-1] if self.reverse else tm
        out[...] = src.transpose(1, 0, 2)
        return out

    def _input_projection(self, x: Any) -> Any:
        """Gate pre-activations from the inputs of every step: (T, N, G*H) = X W + b."""
        be = self.be
        n = x.shape[0]
        t = self.nsteps
        xt = self._time_major(x, "x_tm", self.nin)
        self.x_tm = xt
        width = self.ngates * self.nout
        gx = self.buffer("gates", (t, n, width))
        be.dot(xt.reshape(t * n, self.nin), self.W.value, out=gx.reshape(t * n, width))
        gx += self.b.value
        return gx

    def _initial(self, key: str, n: int) -> Any:
        """The state before the first step: zeros, or ``init_state[key]``."""
        if self.init_state is not None and key in self.init_state:
            return self.be.array(self.init_state[key])
        return 0.0

    def _outputs(self, hs: Any) -> Any:
        """Layer output from the (T+1, N, H) states (index 0: initial state)."""
        if self.return_sequences:
            self.y = self._batch_major(hs[1:], "y")
        else:
            y = self.buffer("y", hs.shape[1:])
            y[...] = hs[-1]
            self.y = y
        return self.y

    def _output_grads(self, delta: Any) -> Any:
        """dL/dh per processing step, (T, N, H); steps without an output get zeros."""
        t, n, h = self.nsteps, delta.shape[0], self.nout
        if self.return_sequences:
            return self._time_major(delta, "dy_tm", h)
        dy = self.buffer("dy_tm", (t, n, h))
        dy[:-1] = 0
        dy[-1] = delta
        return dy

    def _param_grads(self, dgx: Any, dgh: Any, hs: Any) -> Any:
        """W, U, b gradients from the pre-activation gradients of all steps; returns dx.

        ``dgx`` (T, N, G*H): gradients of the input projections; ``dgh``: those of the
        recurrent projections (the same array for RNN and LSTM).
        """
        be = self.be
        t, n, width = dgx.shape
        dgx2 = dgx.reshape(t * n, width)
        be.dot(self.x_tm.reshape(t * n, self.nin), dgx2, out=self.W.grad, trans_a=True)
        be.dot(hs[:-1].reshape(t * n, self.nout), dgh.reshape(t * n, width), out=self.U.grad,
               trans_a=True)
        dgx2.sum(axis=0, out=self.b.grad)
        be.quantize(self.b.grad)
        if not self.need_input_grad:
            return None
        dx_tm = self.buffer("dx_tm", (t, n, self.nin))
        be.dot(dgx2, self.W.value, out=dx_tm.reshape(t * n, self.nin), trans_b=True)
        return self._batch_major(dx_tm, "dx")

    def describe(self) -> str:
        extra = []
        if self.reverse:
            extra.append("reverse")
        if not self.return_sequences:
            extra.append("last step")
        if self.truncate:
            extra.append(f"truncate={self.truncate}")
        more = f" ({', '.join(extra)})" if extra else ""
        return (f"{self.name}: {self.registry_name} {self.in_shape} -> {self.out_shape}, "
                f"{self.nout} units{more}")


@LAYERS.register("rnn", "simple_rnn", "recurrent")
class SimpleRNN(Recurrent):
    """``h_t = act(x_t W + h_{t-1} U + b)`` (Elman network), tanh by default."""

    registry_name = "rnn"

    def __init__(
        self,
        nout: int,
        activation: str | dict | Activation = "tanh",
        init: str | dict | float | Initializer = "glorot",
        init_inner: str | dict | float | Initializer = "orthogonal",
        bias: float = 0.0,
        reverse: bool = False,
        return_sequences: bool = True,
        truncate: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(nout, init, init_inner, bias, reverse, return_sequences, truncate, name)
        self.activation_fn = build_activation(activation)
        if self.activation_fn.registry_name == "softmax":
            raise ValueError("softmax is not a recurrent activation")

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be = self.be
        n, t = x.shape[0], self.nsteps
        a = self._input_projection(x)
        hs = self.buffer("hs", (t + 1, n, self.nout))
        hs[0] = self._initial("h", n)
        for s in range(t):
            be.dot(hs[s], self.U.value, out=a[s], accumulate=True)
            self.activation_fn.fprop(be, a[s], hs[s + 1])
            be.quantize(hs[s + 1])
        self.hs = hs
        return self._outputs(hs)

    def bprop(self, delta: Any) -> Any:
        be = self.be
        t = self.nsteps
        dy = self._output_grads(delta)
        hs = self.hs
        da = self.buffer("dgates", hs[1:].shape)
        dh = self.buffer("dh", hs.shape[1:])
        for s in reversed(range(t)):
            if s + 1 < t and self.carries(s + 1):
                dh[...] = dy[s]  # dL/dh_s = output gradient + recurrent GEMM, rounded once
                be.dot(da[s + 1], self.U.value, out=dh, trans_b=True, accumulate=True)
            else:
                dh[...] = dy[s]
            self.activation_fn.bprop(be, hs[s + 1], dh, da[s])
            be.quantize(da[s])
        return self._param_grads(da, da, hs)


@LAYERS.register("lstm")
class LSTM(Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with forget gate).

    Gates ``[i, f, o, g] = [sigm, sigm, sigm, tanh](x W + h U + b)``; ``c = f c' + i g``;
    ``h = o tanh(c)``. ``forget_bias`` initialises the forget gate's bias (1.0 helps long
    memories); ``bias`` the others.
    """

    registry_name = "lstm"
    ngates = 4
    state_names = ("h", "c")

    def __init__(
        self,
        nout: int,
        init: str | dict | float | Initializer = "glorot",
        init_inner: str | dict | float | Initializer = "orthogonal",
        bias: float = 0.0,
        forget_bias: float = 1.0,
        reverse: bool = False,
        return_sequences: bool = True,
        truncate: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(nout, init, init_inner, bias, reverse, return_sequences, truncate, name)
        self.forget_bias = float(forget_bias)

    def initial_bias(self, be: Any) -> Any:
        b = np.full((4, self.nout), self.bias)
        b[1] = self.forget_bias
        return be.array(b.reshape(-1))

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be = self.be
        n, t, h = x.shape[0], self.nsteps, self.nout
        gates = self._input_projection(x)
        hs = self.buffer("hs", (t + 1, n, h))
        cs = self.buffer("cs", (t + 1, n, h))
        tcs = self.buffer("tanh_cs", (t, n, h))
        hs[0] = self._initial("h", n)
        cs[0] = self._initial("c", n)
        u = self.U.value
        for s in range(t):
            be.dot(hs[s], u, out=gates[s], accumulate=True)
            be.lstm_cell_fprop(gates[s], cs[s], cs[s + 1], tcs[s], hs[s + 1])
        self.gates, self.hs, self.cs, self.tcs = gates, hs, cs, tcs
        return self._outputs(hs)

    def bprop(self, delta: Any) -> Any:
        be = self.be
        t = self.nsteps
        dy = self._output_grads(delta)
        gates, hs, cs, tcs = self.gates, self.hs, self.cs, self.tcs
        dgates = self.buffer("dgates", gates.shape)
        dh = self.buffer("dh", hs.shape[1:])
        dc = self.buffer("dc", hs.shape[1:])
        dc.fill(0)
        u = self.U.value
        for s in reversed(range(t)):
            if s + 1 < t and self.carries(s + 1):
                dh[...] = dy[s]  # dL/dh_s = output gradient + recurrent GEMM, rounded once
                be.dot(dgates[s + 1], u, out=dh, trans_b=True, accumulate=True)
            else:
                dh[...] = dy[s]
                dc.fill(0)
            be.lstm_cell_bprop(gates[s], cs[s], tcs[s], dh, dc, dgates[s], dc)
        return self._param_grads(dgates, dgates, hs)


@LAYERS.register("gru")
class GRU(Recurrent):
    """Gated recurrent unit (Cho et al. 2014), with the reset gate applied after the
    recurrent product (as cuDNN and PyTorch do, so one GEMM serves all three gates):

    ``r = sigm(x W_r + h U_r + b_r)``, ``z = sigm(x W_z + h U_z + b_z)``,
    ``n = tanh(x W_n + b_n + r * (h U_n))``, ``h' = (1 - z) n + z h``.
    Its elementwise part is plain ``be.xp`` code (a fused primitive may replace it).
    """

    registry_name = "gru"
    ngates = 3

    def fprop(self, x: Any, inference: bool = False) -> Any:
        be = self.be
        xp = be.xp
        n, t, h = x.shape[0], self.nsteps, self.nout
        acts = self._input_projection(x)  # becomes [r, z, n] activations, step by step
        hs = self.buffer("hs", (t + 1, n, h))
        hn = self.buffer("hn", (t, n, h))  # h U_n, needed for the reset gate's gradient
        gh = self.buffer("gh", (n, 3 * h))
        hs[0] = self._initial("h", n)
        for s in range(t):
            be.dot(hs[s], self.U.value, out=gh)
            a = acts[s]
            rz = a[:, : 2 * h]
            rz += gh[:, : 2 * h]
            xp.negative(rz, out=rz)
            xp.exp(rz, out=rz)
            rz += 1
            xp.reciprocal(rz, out=rz)
            r, z, cand = a[:, :h], a[:, h: 2 * h], a[:, 2 * h:]
            hn[s] = gh[:, 2 * h:]
            cand += r * hn[s]
            xp.tanh(cand, out=cand)
            be.quantize(a)
            # h' = n + z (h - n)
            hnext = hs[s + 1]
            xp.subtract(hs[s], cand, out=hnext)
            hnext *= z
            hnext += cand
            be.quantize(hnext)
        self.acts, self.hs, self.hn = acts, hs, hn
        return self._outputs(hs)

    def bprop(self, delta: Any) -> Any:
        be = self.be
        xp = be.xp
        t, h = self.nsteps, self.nout
        dy = self._output_grads(delta)
        acts, hs, hn = self.acts, self.hs, self.hn
        dgx = self.buffer("dgates", acts.shape)
        dgh = self.buffer("dgates_h", acts.shape)
        dh = self.buffer("dh", hs.shape[1:])
        dh_next = self.buffer("dh_next", hs.shape[1:])
        for s in reversed(range(t)):
            if s + 1 < t and self.carries(s + 1):
                # dL/dh_s: output gradient, direct path through z * h, recurrent GEMM
                xp.multiply(dh_next, acts[s + 1][:, h: 2 * h], out=dh)
                dh += dy[s]
                be.dot(dgh[s + 1], self.U.value, out=dh, trans_b=True, accumulate=True)
            else:
                dh[...] = dy[s]
            a = acts[s]
            r, z, cand = a[:, :h], a[:, h: 2 * h], a[:, 2 * h:]
            dr, dz, dn = dgx[s][:, :h], dgx[s][:, h: 2 * h], dgx[s][:, 2 * h:]
            xp.multiply(dh * (1 - z), 1 - cand * cand, out=dn)
            xp.multiply(dh * (hs[s] - cand), z * (1 - z), out=dz)
            xp.multiply(dn * hn[s], r * (1 - r), out=dr)
            be.quantize(dgx[s])
            dgh[s][:, : 2 * h] = dgx[s][:, : 2 * h]
            xp.multiply(dn, r, out=dgh[s][:, 2 * h:])
            be.quantize(dgh[s])
            dh, dh_next = dh_next, dh
        return self._param_grads(dgx, dgh, hs)
