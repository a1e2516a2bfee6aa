"""Spearmint-style Bayesian optimization (Snoek, Larochelle & Adams 2012; HIPS/Spearmint).

A GP with a Matern 5/2 ARD kernel, constant mean and noise on standardized outputs over the
encoded unit cube (log dimensions in log space, integers at their bin centres, choices
one-hot), optional Beta-CDF input warping; its hyperparameters are integrated out by slice
sampling (one chain continued from ``ask`` to ``ask``: ``burnin`` sweeps once, then
``mcmc_samples`` per ask).  The acquisition is expected improvement averaged over the
samples, maximized over a Sobol grid plus points sprayed around the incumbent, the best of
which are refined by L-BFGS-B with analytic gradients.

* Initial design: ``2 * dims`` (at least 3) Sobol points, as many as ARD length scales plus
  a few: fewer leave the first GP fits unidentified.
* Pending points: fantasized at the posterior mean of each sample (Spearmint's default).
* Failed points: entered into the GP at the worst observed value (as SMAC imputes them),
  and EI is multiplied by a probability of success (``success.SuccessModel``), so failing
  regions are avoided even where the GP extrapolates well.
* The acquisition is optimized as log EI (same maximizer, no underflow where EI is tiny).
* Restarts (``restart``, beyond Spearmint): once an *episode* has converged on one basin
  (no real improvement and its last points packed around the incumbent), a new episode
  starts with a fresh Sobol design and a GP of its own observations only, as TuRBO does.
  A stationary GP fitted to a densely sampled basin otherwise learns that dimensions the
  basin ignores are irrelevant everywhere and never looks for other basins (Hartmann6).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
from scipy import linalg, optimize
from scipy.special import logsumexp

from search.space import Point, SearchSpace, point_key
from search.strategies import STRATEGIES
from search.strategies.base import Observation, Strategy
from search.strategies.encoding import Encoder
from search.strategies.gp import GPPosterior, HyperLayout, log_expected_improvement, slice_sample
from search.strategies.sobol import SobolStream
from search.strategies.success import SuccessModel

try:  # installed with scikit-learn; optional
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = ["Acquisition", "Spearmint"]

_SPRAY_SCALES = (1e-3, 1e-2, 1e-1)


class Acquisition:
    """log of (EI averaged over GP hyperparameter samples x P(success))."""

    def __init__(
        self,
        posteriors: list[GPPosterior],
        bests: list[float],
        success: SuccessModel | None = None,
    ) -> None:
        self.posteriors = posteriors
        self.bests = bests
        self.success = success

    def add_pending(self, z: np.ndarray) -> None:
        """Condition every sample on fantasies at ``z`` (rows)."""
        self.posteriors = [p.with_fantasies(z) for p in self.posteriors]

    def __call__(self, z: np.ndarray, grad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Values at rows ``z`` (m,) and, when ``grad``, gradients (m, width)."""
        terms, grads = [], []
        for post, best in zip(self.posteriors, self.bests):
            mu, var, dmu, dvar = post.predict(z, grad)
            sigma = np.sqrt(var)
            value, d_mu, d_sigma = log_expected_improvement(mu, sigma, best)
            terms.append(value)
            if grad:
                grads.append(d_mu[:, None] * dmu + (d_sigma / (2.0 * sigma))[:, None] * dvar)
        stacked = np.array(terms)
        total = logsumexp(stacked, axis=0) - math.log(len(terms))
        gradient = None
        if grad:
            weights = np.exp(stacked - total[None, :] - math.log(len(terms)))
            gradient = np.einsum("sm,smd->md", weights, np.array(grads))
        if self.success is not None:
            log_p, d_log_p = self.success.log_prob(z, grad)
            total = total + log_p
            if grad:
                gradient = gradient + d_log_p
        return total, gradient


@STRATEGIES.register("spearmint", "gp")
class Spearmint(Strategy):
    """GP expected-improvement search with MCMC-integrated hyperparameters.

    Options: ``n_initial`` Sobol points first (default ``max(3, 2 * dims)``),
    ``mcmc_samples`` hyperparameter samples per ask after ``burnin``, ``warping`` (Beta-CDF
    input warping of numeric dimensions), ``grid_size`` Sobol candidates, ``n_spray``
    candidates per scale around the incumbent, ``n_starts`` of the best refined by
    L-BFGS-B (``max_iter`` iterations), ``failure_prior`` pseudo-observations of the
    success-probability model, ``impute_failures``, ``ls_prior`` (see ``HyperLayout``),
    ``restart`` with ``patience`` (default ``max(10, 2 * dims)``) and ``restart_radius``.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        n_initial: int | None = None,
        mcmc_samples: int = 10,
        burnin: int = 100,
        warping: bool = True,
        grid_size: int = 1000,
        n_spray: int = 20,
        n_starts: int = 5,
        max_iter: int = 50,
        failure_prior: float = 0.25,
        ls_prior: str = "lognormal",
        restart: bool = True,
        patience: int | None = None,
        restart_radius: float = 0.1,
        impute_failures: bool = True,
    ) -> None:
        super().__init__(space, seed)
        self.n_initial = max(3, 2 * len(self.space)) if n_initial is None else int(n_initial)
        if mcmc_samples < 1 or burnin < 0 or grid_size < 1 or n_starts < 0:
            raise ValueError("mcmc_samples, grid_size must be >= 1; burnin, n_starts >= 0")
        self.mcmc_samples, self.burnin = mcmc_samples, burnin
        self.grid_size, self.n_spray, self.n_starts, self.max_iter = (
            grid_size, n_spray, n_starts, max_iter,
        )
        self.failure_prior = failure_prior
        self.impute_failures = impute_failures
        self.restart, self.restart_radius = restart, restart_radius
        self.patience = max(10, 2 * len(self.space)) if patience is None else int(patience)
        self._episode_start = 0  # history index where the current episode began
        self._episode_asked = 0  # n_asked when it began
        self.encoder = Encoder(self.space)
        self.layout = HyperLayout(self.encoder.width, self.encoder.numeric if warping else None,
                                  ls_prior)
        self._design = SobolStream(len(self.space), self.seed)
        self._theta = self.layout.initial()
        self._chain_length = 0

    # -- state ----------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "design_count": self._design.count,
            "theta": [float(t) for t in self._theta],
            "chain_length": self._chain_length,
            "episode": [self._episode_start, self._episode_asked],
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._design = SobolStream(len(self.space), self.seed, extra["design_count"])
        self._theta = np.array(extra["theta"], dtype=float)
        self._chain_length = int(extra["chain_length"])
        self._episode_start, self._episode_asked = (int(e) for e in extra["episode"])

    # -- the model ------------------------------------------------------------------------
    def _sample_hypers(self, z: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """Continue the slice-sampling chain on this data; returns ``mcmc_samples`` states."""
        layout = self.layout

        def log_posterior(theta: np.ndarray) -> float:
            lp = layout.log_prior(theta)
            if not math.isfinite(lp):
                return -math.inf
            try:
                return lp + GPPosterior(layout, layout.unpack(theta), z, y).log_likelihood()
            except (linalg.LinAlgError, FloatingPointError, ValueError):
                return -math.inf

        burn = self.burnin if self._chain_length < self.burnin else 0
        widths = np.ones(layout.size)
        theta, lp, samples = self._theta, None, []
        if not math.isfinite(log_posterior(theta)):
            theta = layout.initial()
        for i in range(burn + self.mcmc_samples):
            theta, lp = slice_sample(log_posterior, theta, self.rng, layout.blocks, widths, lp)
            self._chain_length += 1
            if i >= burn:
                samples.append(theta)
        self._theta = theta
        return samples

    def _acquisition(self, observations: list[Observation]) -> Acquisition | None:
        ok = [o for o in observations if o.value is not None]
        if len(ok) < 2:
            return None
        # failed points enter the GP at the worst observed value (as SMAC imputes them)
        fitted = observations if self.impute_failures else ok
        worst = max(o.value for o in ok)
        z = self.encoder.encode_points([o.point for o in fitted])
        values = np.array([worst if o.value is None else o.value for o in fitted])
        std = values.std()
        y = (values - values.mean()) / (std if std > 0 else 1.0)
        posteriors = [
            GPPosterior(self.layout, self.layout.unpack(t), z, y)
            for t in self._sample_hypers(z, y)
        ]
        bests = [float(p.predict(z)[0].min()) for p in posteriors]
        success = None
        if len(ok) < len(observations):
            inputs = (z if fitted is observations
                      else self.encoder.encode_points([o.point for o in observations]))
            outcomes = np.array([o.value is not None for o in observations], dtype=float)
            success = SuccessModel(inputs, outcomes, self.failure_prior)
        acquisition = Acquisition(posteriors, bests, success)
        if self.pending:
            acquisition.add_pending(self.encoder.encode_points(self.pending))
        return acquisition

    # -- maximizing the acquisition -------------------------------------------------------
    def _candidates(self, incumbent: Point | None) -> np.ndarray:
        seed = int(self.rng.integers(2**63 - 1))
        units = [SobolStream(len(self.space), seed).draw(self.grid_size)]
        if incumbent is not None and self.n_spray:
            centre = self.space.to_unit(incumbent)
            for scale in _SPRAY_SCALES:
                noise = self.rng.standard_normal((self.n_spray, len(self.space)))
                units.append(np.clip(centre + scale * noise, 0.0, 1.0))
        return np.vstack(units)

    def _refine(self, acquisition: Acquisition, z0: np.ndarray, free: np.ndarray) -> np.ndarray:
        """L-BFGS-B from each row of ``z0`` at once (the objective is separable)."""
        if not free.any() or self.max_iter == 0:
            return z0
        shape = z0.shape

        def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = acquisition(x.reshape(shape), grad=True)
            return -float(value.sum()), -grad.ravel()

        flat, mask = z0.ravel(), free.ravel()
        bounds = [(0.0, 1.0) if m else (v, v) for v, m in zip(flat, mask)]
        result = optimize.minimize(
            objective, flat, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": self.max_iter},
        )
        return result.x.reshape(shape)

    def _maximize(self, acquisition: Acquisition, incumbent: Point | None, seen: set[str]) -> Point:
        encoder = self.encoder
        z, free = encoder.encode_units(self._candidates(incumbent))
        scores = acquisition(z)[0]
        order = np.argsort(-scores, kind="stable")
        starts = order[: self.n_starts]
        refined = self._refine(acquisition, z[starts], free[starts])
        # snap the refined points onto the space (integers, choices), then rescore them
        z_ref = encoder.encode_units(encoder.units_of(refined))[0]
        pool = np.vstack([z_ref, z[order[: 10 * max(1, self.n_starts)]]])
        pool_scores = acquisition(pool)[0]
        for i in np.argsort(-pool_scores, kind="stable"):
            point = self.space.from_unit(encoder.units_of(pool[i : i + 1])[0])
            if point_key(point) not in seen:
                return point
        for _ in range(100):  # everything good is taken (tiny discrete space)
            point = self.space.sample(self.rng)
            if point_key(point) not in seen:
                return point
        return point

    # -- ask ------------------------------------------------------------------------------
    def _collapsed(self, observations: list[Observation]) -> bool:
        """Whether the episode has converged on one basin: over its last ``patience``
        points the best value improved by less than 0.1% of (median - best), and their
        median distance to the incumbent is below ``restart_radius * sqrt(dims)``."""
        ok = [o for o in observations if o.value is not None]
        if not self.restart or len(ok) < self.n_initial + self.patience:
            return False
        values = np.array([o.value for o in ok])
        best, before = values.min(), values[: -self.patience].min()
        if before - best >= 1e-3 * (np.median(values) - best):
            return False
        centre = self.space.to_unit(ok[int(np.argmin(values))].point)
        distances = [
            float(np.linalg.norm(self.space.to_unit(o.point) - centre))
            for o in ok[-self.patience :]
        ]
        return float(np.median(distances)) < self.restart_radius * math.sqrt(len(self.space))

    def _suggest(self, n: int) -> list[Point]:
        # the matrices are small (<= a few hundred): BLAS threads only add overhead, and on
        # a busy machine their spinning makes an ask ~15x slower (measured)
        limit = threadpool_limits(1, user_api="blas") if threadpool_limits else None
        with limit or contextlib.nullcontext():
            return self._suggest_points(n)

    def _suggest_points(self, n: int) -> list[Point]:
        observations = self.model_observations(since=self._episode_start)
        if self._collapsed(observations):
            # a new episode: fresh design and a model of its own data only (as TuRBO's
            # restarts), so one converged basin cannot hide the others; history keeps all
            self._episode_start, self._episode_asked = len(self.history), self.n_asked
            self._chain_length, self._theta = 0, self.layout.initial()
            observations = []
        points: list[Point] = []
        n_ok = sum(o.value is not None for o in observations)
        in_episode = self.n_asked - self._episode_asked
        design = max(0, self.n_initial - in_episode) if n_ok >= 2 else n
        for u in self._design.draw(min(n, design)):
            points.append(self.space.from_unit(u))
        if len(points) == n:
            return points
        acquisition = self._acquisition(observations)
        if points:
            acquisition.add_pending(self.encoder.encode_points(points))
        seen = self._used_keys()
        seen.update(point_key(p) for p in points)
        ok = [o for o in observations if o.value is not None]
        incumbent = min(ok, key=lambda o: o.value).point
        while len(points) < n:
            point = self._maximize(acquisition, incumbent, seen)
            seen.add(point_key(point))
            points.append(point)
            if len(points) < n:
                acquisition.add_pending(self.encoder.encode_points([point]))
        return points
