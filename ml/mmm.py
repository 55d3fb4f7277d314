"""Marketing-mix modelling: what each channel's spend adds to an outcome, with carryover and saturation.

Pure numpy/scipy (no Django). marketing/tasks.py loads a dataset's series, calls `run()`, and
stores what it returns: the fitted curves (`params`, which the allocator reads back with
`Curves.from_params`) and the page's `report`.

The model, per period t:

    y_t = baseline_t + Σ_c β_c · hill(a_c,t / x̄_c; K_c, S_c) + ε_t
    baseline_t = b0 + b1·t + Σ_k (s_k sin + c_k cos)(2πk·t / P) + Σ_j γ_j z_j,t

- a_c,t is the channel's **adstocked** spend: a weighted moving sum of this and earlier periods'
  spend, the weights normalised to sum to 1 — geometric (w_l = θ^l) or Weibull survival
  (w_l = exp(−(l/λ)^k), a delayed or long-tailed carryover). Normalised, a one-off spend keeps its
  total effect and carryover only spreads it over time; a constant spend x gives a_c = x.
- x̄_c is the channel's mean spend over the periods it spent anything, so the half-saturation
  K_c is in units of the channel's usual spend; S_c is the Hill shape (S > 1: an S-curve with a
  threshold; S ≤ 1: concave from the first dollar).
- β_c ≥ 0 (spend never hurts); the baseline — intercept, linear trend, Fourier seasonality,
  standardised controls — is signed.

Fitting (`fit`) minimises the squared error with scipy's bounded trust-region least squares over
all parameters at once, from several quasi-random (Sobol) starts of the non-linear ones; the linear
ones start from a bounded linear least squares given those, so every start begins sensibly.
A light ridge penalty on the non-intercept coefficients keeps collinear channels from trading
wild coefficients. Validation fits on the first 80 % of periods and scores the last 20 % (R²,
NRMSE = RMSE / range of the actuals as Robyn defines it, MAPE); the reported model is then refit
on every period. Intervals come from a moving-block residual bootstrap: refits on the fitted
values plus resampled blocks of residuals (blocks keep their autocorrelation), from the fitted
parameters.

Response curves are **steady state**: r_c(x) = β_c · hill(x / x̄_c) is what spending x every
period adds per period once carryover has built up, so the allocator never ignores carryover
(a channel with a long carryover is judged on the whole effect of its spend, not the first
period's share). The allocator (`allocate`) splits a total per period across channels under
bounds: dynamic programming over a fine grid finds the global optimum of the separable problem
even where S-curves make it non-concave (a greedy or gradient method stops in a local one), then
SLSQP polishes it off the grid; the result always sums to the total and respects every bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import optimize, signal
from scipy.stats import qmc

Progress = Callable[[float, str], None]

# Per frequency: periods of a seasonal cycle (Fourier terms), the longest carryover considered,
# the largest geometric decay, and how many recent periods make "current" spend.
CYCLES = {"day": (7.0, 365.25), "week": (365.25 / 7,), "month": (12.0,)}
MAX_LAG = {"day": 42, "week": 13, "month": 6}
MAX_THETA = {"day": 0.95, "week": 0.9, "month": 0.8}
RECENT = {"day": 28, "week": 13, "month": 3}
K_BOUNDS = (0.05, 10.0)
S_BOUNDS = (0.5, 4.0)
WEIBULL_SHAPE = (0.3, 5.0)


class MixError(ValueError):
    """The series cannot be modelled as asked (too short, no spend, bounds that cannot hold …)."""


@dataclass
class Options:
    adstock: str = "geometric"  # "geometric", "weibull" or "none" (cross-sectional data: no time order)
    seasonality: int = 2  # Fourier order per cycle; 0 for none. A cycle is used only with a full cycle of data
    trend: bool = True
    holdout: float = 0.2  # the last share of periods, scored but not fitted
    holdout_mask: np.ndarray | None = None  # or an explicit one (cross-sectional data has no "last")
    starts: int = 8
    bootstrap: int = 40
    ridge: float = 0.001
    recent: int | None = None  # periods that make "current spend"; RECENT[frequency] by default
    threshold: float | None = None  # plateau: marginal return per unit of spend below this (1.0 for revenue)
    seed: int = 0


@dataclass
class MixData:
    spend: dict[str, np.ndarray]
    outcome: np.ndarray
    frequency: str = "week"
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    dates: list[str] | None = None
    outcome_kind: str = "revenue"  # "revenue": returns are money; "count": costs per outcome

    def __post_init__(self):
        self.spend = {k: np.asarray(v, dtype=float) for k, v in self.spend.items()}
        self.controls = {k: np.asarray(v, dtype=float) for k, v in self.controls.items()}
        self.outcome = np.asarray(self.outcome, dtype=float)
        n = len(self.outcome)
        if not self.spend:
            raise MixError("There is no spend column to model.")
        for name, values in [*self.spend.items(), *self.controls.items()]:
            if len(values) != n:
                raise MixError(f"{name} has {len(values)} periods, the outcome {n}.")
            if not np.isfinite(values).all():
                raise MixError(f"{name} has missing or infinite values.")
        for name, values in self.spend.items():
            if (values < 0).any():
                raise MixError(f"{name} has negative spend.")
            if not (values > 0).any():
                raise MixError(f"{name} never spends anything: there is nothing to learn about it.")
        if self.frequency not in CYCLES:
            raise MixError(f"Unknown frequency {self.frequency!r}.")

    @property
    def n(self) -> int:
        return len(self.outcome)

    @property
    def channels(self) -> list[str]:
        return list(self.spend)


# -- the transforms ------------------------------------------------------------------------------------------


def weights(adstock: str, a: float, b: float, lags: int) -> np.ndarray:
    """Carryover weights for lags 0..lags−1, normalised to sum to 1 (a = θ, or a = shape k and b = scale λ)."""
    lag = np.arange(lags, dtype=float)
    if adstock == "none":
        w = (lag == 0).astype(float)
    elif adstock == "geometric":
        w = a ** lag
    elif adstock == "weibull":
        w = np.exp(-((lag / max(b, 1e-6)) ** a))
    else:
        raise MixError(f"Unknown adstock {adstock!r}: geometric, weibull or none.")
    return w / w.sum()


def adstock(x: np.ndarray, adstock_kind: str, a: float, b: float, lags: int) -> np.ndarray:
    """The carried-over level of spend: Σ_l w_l · x_{t−l}, weights normalised (a constant spend stays itself)."""
    if adstock_kind == "geometric":  # the infinite geometric sum by recursion: a_t = x_t + θ·a_{t−1}, scaled by 1 − θ
        return signal.lfilter([1.0 - a], [1.0, -a], x)
    return np.convolve(x, weights(adstock_kind, a, b, lags))[: len(x)]


def hill(u: np.ndarray, k: float, s: float) -> np.ndarray:
    """u^S / (u^S + K^S): 0 at no spend, ½ at K, toward 1 at saturation."""
    u = np.maximum(u, 0.0)
    us = u ** s
    return us / (us + k ** s)


def hill_slope(u: np.ndarray, k: float, s: float) -> np.ndarray:
    """d hill / du."""
    u = np.maximum(np.asarray(u, dtype=float), 1e-12)
    us, ks = u ** s, k ** s
    return s * ks * us / (u * (us + ks) ** 2)


# -- the design and the parameter vector ---------------------------------------------------------------------


@dataclass
class Spec:
    """Everything that turns raw series into the model's inputs: fixed by the data, not fitted."""

    channels: list[str]
    controls: list[str]
    frequency: str
    adstock: str
    lags: int
    scale: dict[str, float]  # x̄ per channel
    y_scale: float
    control_mean: dict[str, float]
    control_std: dict[str, float]
    cycles: list[float]
    order: int
    trend: bool
    n: int  # periods of the data the spec was made from: t runs 0..1 over them
    ridge: float

    @classmethod
    def of(cls, data: MixData, options: Options) -> Spec:
        cycles = [c for c in CYCLES[data.frequency] if data.n >= c] if options.seasonality and options.adstock != "none" else []
        y_scale = float(np.std(data.outcome)) or float(np.mean(np.abs(data.outcome))) or 1.0
        return cls(
            channels=data.channels, controls=list(data.controls), frequency=data.frequency, adstock=options.adstock,
            lags=MAX_LAG[data.frequency],
            scale={c: float(v[v > 0].mean()) for c, v in data.spend.items()}, y_scale=y_scale,
            control_mean={c: float(v.mean()) for c, v in data.controls.items()},
            control_std={c: float(v.std()) or 1.0 for c, v in data.controls.items()},
            cycles=cycles, order=options.seasonality, trend=options.trend and options.adstock != "none", n=data.n,
            ridge=options.ridge,
        )

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> Spec:
        return cls(**d)

    # the vector: per channel [a, b, K, S] then β per channel, then the baseline coefficients
    @property
    def per_channel(self) -> int:
        return 4

    def baseline_names(self) -> list[str]:
        names = ["intercept"] + (["trend"] if self.trend else [])
        for cycle in self.cycles:
            for k in range(1, self.order + 1):
                names += [f"sin {k}/{cycle:g}", f"cos {k}/{cycle:g}"]
        return names + [f"control {c}" for c in self.controls]

    def baseline_design(self, data: MixData) -> np.ndarray:
        t = np.arange(data.n, dtype=float)
        columns = [np.ones(data.n)]
        if self.trend:
            columns.append(t / max(self.n - 1, 1))
        for cycle in self.cycles:
            for k in range(1, self.order + 1):
                columns += [np.sin(2 * np.pi * k * t / cycle), np.cos(2 * np.pi * k * t / cycle)]
        columns += [(data.controls[c] - self.control_mean[c]) / self.control_std[c] for c in self.controls]
        return np.column_stack(columns)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = [], []
        for _ in self.channels:
            if self.adstock == "geometric":
                low += [0.0, 0.0]
                high += [MAX_THETA[self.frequency], 1.0]
            elif self.adstock == "weibull":
                low += [WEIBULL_SHAPE[0], 0.3]
                high += [WEIBULL_SHAPE[1], self.lags / 2]
            else:
                low += [0.0, 0.0]
                high += [1e-9, 1.0]  # nothing to fit; a sliver of room keeps the bounds strictly ordered
            low += [K_BOUNDS[0], S_BOUNDS[0]]
            high += [K_BOUNDS[1], S_BOUNDS[1]]
        c = len(self.channels)
        b = len(self.baseline_names())
        return np.array(low + [0.0] * c + [-np.inf] * b), np.array(high + [np.inf] * c + [np.inf] * b)


def _saturated(spec: Spec, data: MixData, p: np.ndarray) -> np.ndarray:
    """Columns hill(adstock(x)/x̄) per channel for the non-linear parameters in p."""
    columns = []
    for i, c in enumerate(spec.channels):
        a, b, k, s = p[4 * i: 4 * i + 4]
        level = adstock(data.spend[c], spec.adstock, a, b, spec.lags) / spec.scale[c]
        columns.append(hill(level, k, s))
    return np.column_stack(columns)


def _jacobian(spec: Spec, data: MixData, p: np.ndarray, base: np.ndarray) -> np.ndarray:
    """d fitted / d p, in closed form but for the adstock parameters (a forward difference of one channel's level)."""
    nonlinear, beta, _ = _split(spec, p)
    c = len(spec.channels)
    out = np.zeros((data.n, len(p)))
    for i, name in enumerate(spec.channels):
        a, b, k, s = nonlinear[4 * i: 4 * i + 4]
        x, scale = data.spend[name], spec.scale[name]
        level = adstock(x, spec.adstock, a, b, spec.lags) / scale
        u = np.maximum(level, 1e-12)
        us, ks = u ** s, k ** s
        h = us / (us + ks)
        slope = s * ks * us / (u * (us + ks) ** 2)
        if spec.adstock != "none":
            for j, (da, db) in enumerate([(1e-6, 0.0), (0.0, 1e-6)]):
                if spec.adstock == "geometric" and j == 1:
                    continue  # a geometric decay has no second parameter
                step = da or db
                sign = -1.0 if (a + da >= MAX_THETA[spec.frequency] and spec.adstock == "geometric") else 1.0
                moved = adstock(x, spec.adstock, a + sign * da, b + sign * db, spec.lags) / scale
                out[:, 4 * i + j] = beta[i] * slope * (moved - level) / (sign * step)
        out[:, 4 * i + 2] = beta[i] * (-us * s * k ** (s - 1) / (us + ks) ** 2)
        out[:, 4 * i + 3] = beta[i] * us * ks * (np.log(u) - np.log(k)) / (us + ks) ** 2
        out[:, 4 * c + i] = h
    out[:, 5 * c:] = base
    return out


def _split(spec: Spec, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = len(spec.channels)
    return p[: 4 * c], p[4 * c: 5 * c], p[5 * c:]


def _predict(spec: Spec, data: MixData, p: np.ndarray, base: np.ndarray) -> np.ndarray:
    nonlinear, beta, gamma = _split(spec, p)
    return (_saturated(spec, data, nonlinear) @ beta + base @ gamma) * spec.y_scale


def _linear_start(spec: Spec, data: MixData, nonlinear: np.ndarray, base: np.ndarray, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """β ≥ 0 and the baseline by bounded linear least squares, given the non-linear parameters."""
    design = np.hstack([_saturated(spec, data, nonlinear), base])[rows]
    c = len(spec.channels)
    low = np.r_[np.zeros(c), np.full(base.shape[1], -np.inf)]
    return optimize.lsq_linear(design, y[rows], bounds=(low, np.inf), method="bvls").x


def _inside(p: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Clip strictly inside the finite bounds (the trust-region method starts from an interior point)."""
    width = np.where(np.isfinite(high - low), high - low, 1.0)
    return np.clip(p, np.where(np.isfinite(low), low + 1e-9 * width, low), np.where(np.isfinite(high), high - 1e-9 * width, high))


@dataclass
class Fitted:
    spec: Spec
    p: np.ndarray
    cost: float

    @property
    def channel_params(self) -> dict[str, dict]:
        nonlinear, beta, _ = _split(self.spec, self.p)
        out = {}
        for i, c in enumerate(self.spec.channels):
            a, b, k, s = nonlinear[4 * i: 4 * i + 4]
            out[c] = {"a": float(a), "b": float(b), "k": float(k), "s": float(s), "beta": float(beta[i] * self.spec.y_scale)}
        return out

    def predict(self, data: MixData) -> np.ndarray:
        return _predict(self.spec, data, self.p, self.spec.baseline_design(data))

    def contributions(self, data: MixData) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Each channel's contribution per period, and the baseline's."""
        nonlinear, beta, gamma = _split(self.spec, self.p)
        sat = _saturated(self.spec, data, nonlinear)
        media = {c: sat[:, i] * beta[i] * self.spec.y_scale for i, c in enumerate(self.spec.channels)}
        return media, self.spec.baseline_design(data) @ gamma * self.spec.y_scale


def fit(data: MixData, options: Options, rows: np.ndarray | None = None, *, spec: Spec | None = None,
        start: np.ndarray | None = None, y: np.ndarray | None = None) -> Fitted:
    """Least squares on `rows` (all by default) from several starts, or from `start` alone (the bootstrap's refits)."""
    spec = spec or Spec.of(data, options)
    rows = np.arange(data.n) if rows is None else rows
    y_scaled = (data.outcome if y is None else y) / spec.y_scale
    base = spec.baseline_design(data)
    constant = np.r_[False, np.ptp(base[rows][:, 1:], axis=0) == 0]
    base[:, constant] = 0.0  # a control that never varies while fitting (an event in the holdout) cannot be learnt: it adds nothing
    low, high = spec.bounds()
    c, ridge = len(spec.channels), math.sqrt(spec.ridge)
    penalised = np.r_[np.zeros(4 * c), np.ones(c), 0.0, np.ones(base.shape[1] - 1)] > 0

    def residuals(p: np.ndarray) -> np.ndarray:
        nonlinear, beta, gamma = _split(spec, p)
        fitted = _saturated(spec, data, nonlinear) @ beta + base @ gamma
        return np.r_[(fitted - y_scaled)[rows], ridge * p[penalised]]

    def jacobian(p: np.ndarray) -> np.ndarray:
        return np.vstack([_jacobian(spec, data, p, base)[rows], ridge * np.eye(len(p))[penalised]])

    if start is not None:
        starts = [np.clip(start, low, high)]
    else:
        sobol = qmc.Sobol(4 * c, seed=options.seed).random(max(options.starts, 1))
        nl_low, nl_high = low[: 4 * c], high[: 4 * c]
        starts = []
        for u in sobol:
            nonlinear = nl_low + u * (nl_high - nl_low)
            starts.append(np.r_[nonlinear, _linear_start(spec, data, nonlinear, base, rows, y_scaled)])
    best = None
    for p0 in starts:
        p0 = _inside(p0, low, high)
        result = optimize.least_squares(residuals, p0, jac=jacobian, bounds=(low, high), method="trf", x_scale="jac",
                                        max_nfev=2000 if start is None else 300)
        if best is None or result.cost < best.cost:
            best = result
    return Fitted(spec=spec, p=best.x, cost=float(best.cost))


# -- scores ------------------------------------------------------------------------------------------------------


def scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """R² (against the set's own mean), NRMSE (RMSE over the actuals' range, as Robyn) and MAPE (non-zero actuals)."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    error = actual - predicted
    sst = float(((actual - actual.mean()) ** 2).sum())
    spread = float(actual.max() - actual.min())
    nonzero = actual != 0
    return {
        "r2": 1 - float((error ** 2).sum()) / sst if sst > 0 else None,
        "nrmse": float(np.sqrt((error ** 2).mean())) / spread if spread > 0 else None,
        "mape": float(np.mean(np.abs(error[nonzero] / actual[nonzero]))) if nonzero.any() else None,
    }


def holdout_rows(n: int, options: Options) -> tuple[np.ndarray, np.ndarray]:
    if options.holdout_mask is not None:
        mask = np.asarray(options.holdout_mask, bool)
        return np.flatnonzero(~mask), np.flatnonzero(mask)
    cut = n - max(int(round(n * options.holdout)), 1)
    return np.arange(cut), np.arange(cut, n)


# -- steady-state curves ----------------------------------------------------------------------------------------


class Curves:
    """Steady-state response per period of each channel, r(x) = β·hill(x/x̄), for one or many parameter draws."""

    def __init__(self, channels: dict[str, dict], draws: list[dict[str, dict]] | None = None):
        self.channels = channels  # name → {"a", "b", "k", "s", "beta", "scale"}
        self.draws = draws or []

    @classmethod
    def from_params(cls, params: dict) -> Curves:
        return cls(params["channels"], params.get("draws"))

    @property
    def names(self) -> list[str]:
        return list(self.channels)

    @staticmethod
    def _r(c: dict, x) -> np.ndarray:
        return c["beta"] * hill(np.asarray(x, float) / c["scale"], c["k"], c["s"])

    @staticmethod
    def _m(c: dict, x) -> np.ndarray:
        return c["beta"] * hill_slope(np.asarray(x, float) / c["scale"], c["k"], c["s"]) / c["scale"]

    def response(self, name: str, x) -> np.ndarray:
        return self._r(self.channels[name], x)

    def marginal(self, name: str, x) -> np.ndarray:
        """dr/dx: what the next unit of spend per period adds per period (marginal ROAS for a revenue outcome)."""
        return self._m(self.channels[name], x)

    def total(self, spend: dict[str, float]) -> float:
        return float(sum(self.response(c, spend[c]) for c in self.names))

    def draw_totals(self, spend: dict[str, float]) -> np.ndarray:
        return np.array([sum(float(self._r(d[c], spend[c])) for c in self.names) for d in self.draws])

    def plateau(self, name: str, threshold: float, upto: float) -> float | None:
        """The smallest spend past the curve's steepest point where the marginal return falls under `threshold`."""
        c = self.channels[name]
        xs = np.linspace(0, upto, 2001)[1:]
        m = self._m(c, xs)
        past_peak = xs >= xs[int(np.argmax(m))]
        under = np.flatnonzero(past_peak & (m < threshold))
        return float(xs[under[0]]) if under.size else None


# -- the whole job ------------------------------------------------------------------------------------------------


def _blocks(residuals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(residuals)
    size = max(2, int(round(n ** (1 / 3))))
    out = np.empty(0)
    while len(out) < n:
        start = rng.integers(0, n - size + 1)
        out = np.r_[out, residuals[start: start + size]]
    return out[:n]


def _interval(values, level: float = 0.9) -> list[float] | None:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if values.size < 2:
        return None
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def _channels(fitted: Fitted) -> dict[str, dict]:
    return {c: {**v, "scale": fitted.spec.scale[c]} for c, v in fitted.channel_params.items()}


def carryover(spec: Spec, params: dict) -> dict:
    """Share of a spend's effect in its own period and each later one, and the lag by which half of it has shown."""
    if spec.adstock == "none":
        return {"weights": [1.0], "half_life": 0, "mean_lag": 0.0}
    lags = spec.lags if spec.adstock == "weibull" else max(spec.lags, 2)
    w = weights(spec.adstock, params["a"], params["b"], 400 if spec.adstock == "geometric" else lags)
    cumulative = np.cumsum(w)
    return {"weights": [round(float(x), 4) for x in w[:lags]], "half_life": int(np.searchsorted(cumulative, 0.5)),
            "mean_lag": float((np.arange(len(w)) * w).sum())}


def run(data: MixData, options: Options | None = None, progress: Progress | None = None) -> tuple[dict, dict, dict]:
    """Validate, fit, bootstrap and describe: returns (params, metrics, report), each plain JSON."""
    options = options or Options()
    progress = progress or (lambda f, m: None)
    n = data.n
    train, test = holdout_rows(n, options)
    if len(train) < 4 * len(data.channels) + 4:
        raise MixError(f"{n} periods are too few to fit {len(data.channels)} channels; add periods or drop channels.")
    spec = Spec.of(data, options)

    progress(0.05, f"Validation fit on the first {len(train)} of {n} periods")
    checked = fit(data, options, train, spec=spec)
    predicted = checked.predict(data)
    metrics = {"fit_periods": int(len(train)), "holdout_periods": int(len(test)),
               **{f"{k}_train": v for k, v in scores(data.outcome[train], predicted[train]).items()},
               **{f"{k}_holdout": v for k, v in scores(data.outcome[test], predicted[test]).items()}}

    progress(0.3, "Fit on every period")
    final = fit(data, options, spec=spec)
    final_start = fit(data, options, spec=spec, start=checked.p)  # the validated solution is one more start
    if final_start.cost < final.cost:
        final = final_start
    fitted_values = final.predict(data)
    metrics.update({f"{k}_all": v for k, v in scores(data.outcome, fitted_values).items()})
    curves = Curves(_channels(final))

    rng = np.random.default_rng(options.seed)
    residuals = data.outcome - fitted_values
    draws, draw_fits = [], []
    for i in range(options.bootstrap):
        if i % 5 == 0:
            progress(0.4 + 0.5 * i / max(options.bootstrap, 1), f"Bootstrap refit {i + 1} of {options.bootstrap}")
        y = fitted_values + _blocks(residuals, rng)
        refit = fit(data, options, spec=spec, start=final.p, y=y)
        draw_fits.append(refit)
        draws.append(_channels(refit))
    curves.draws = draws

    progress(0.92, "Contributions, returns and curves")
    report = describe(data, options, final, curves, draw_fits, fitted_values)
    params = {"spec": spec.to_dict(), "channels": curves.channels, "draws": draws,
              "current": report["current"], "observed_max": report["observed_max"], "outcome_kind": data.outcome_kind}
    return params, metrics, report


def describe(data: MixData, options: Options, final: Fitted, curves: Curves, draw_fits: list[Fitted],
             fitted_values: np.ndarray) -> dict:
    """The report the page draws: decomposition over time, per channel ROI, marginal ROI, curves, carryover."""
    spec = final.spec
    recent = min(options.recent or RECENT[data.frequency], data.n)
    current = {c: float(v[-recent:].mean()) for c, v in data.spend.items()}
    observed_max = {c: float(v.max()) for c, v in data.spend.items()}
    media, base = final.contributions(data)
    draw_media = [f.contributions(data)[0] for f in draw_fits]
    revenue = data.outcome_kind == "revenue"
    total_spend = {c: float(v.sum()) for c, v in data.spend.items()}
    contribution = {c: float(v.sum()) for c, v in media.items()}
    threshold = options.threshold
    if threshold is None:  # revenue: the next unit of spend returns less than itself; counts: costs twice the average
        overall = sum(contribution.values()) / max(sum(total_spend.values()), 1e-12)
        threshold = 1.0 if revenue else overall / 2
    channels = []
    for c in spec.channels:
        params = curves.channels[c]
        upto = max(2 * observed_max[c], 1.5 * current[c])
        xs = np.linspace(0, upto, 61)
        band = np.array([[Curves._r(d[c], x) for x in xs] for d in curves.draws]) if curves.draws else None
        roas = contribution[c] / total_spend[c] if total_spend[c] else None
        draw_roas = [float(m[c].sum()) / total_spend[c] for m in draw_media] if total_spend[c] else []
        channels.append({
            "name": c, "spend": total_spend[c], "contribution": contribution[c],
            "contribution_interval": _interval([float(m[c].sum()) for m in draw_media]),
            "roas": roas, "roas_interval": _interval(draw_roas),
            "current": current[c], "observed_max": observed_max[c],
            "mroas": float(curves.marginal(c, current[c])),
            "mroas_interval": _interval([float(Curves._m(d[c], current[c])) for d in curves.draws]),
            "plateau": curves.plateau(c, threshold, upto * 2),
            "params": params,
            "curve": {"x": xs.tolist(), "y": [float(v) for v in curves.response(c, xs)],
                      "low": band is not None and np.percentile(band, 5, axis=0).tolist() or None,
                      "high": band is not None and np.percentile(band, 95, axis=0).tolist() or None},
            "carryover": carryover(spec, params),
        })
    media_total = sum(contribution.values())
    for ch in channels:
        ch["share"] = ch["contribution"] / media_total if media_total else 0.0
    return {
        "frequency": data.frequency, "outcome_kind": data.outcome_kind, "adstock": spec.adstock,
        "dates": data.dates or [str(i + 1) for i in range(data.n)], "recent_periods": recent, "threshold": threshold,
        "actual": data.outcome.tolist(), "fitted": fitted_values.tolist(), "baseline": base.tolist(),
        "media": {c: v.tolist() for c, v in media.items()},
        "channels": channels, "current": current, "observed_max": observed_max,
        "baseline_share": float(base.sum() / data.outcome.sum()) if data.outcome.sum() else None,
        "coefficients": dict(zip(spec.baseline_names(), (_split(spec, final.p)[2] * spec.y_scale).tolist())),
    }


# -- the allocator --------------------------------------------------------------------------------------------------


@dataclass
class Allocation:
    spend: dict[str, float]
    response: float
    feasible: bool = True
    note: str = ""


def _dp(curves: Curves, low: dict, high: dict, budget: float, grid: int) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Best total response for every grid budget in 0..budget above the lower bounds, with back-pointers.

    Separable maximisation Σ r_c(x_c) s.t. Σ x_c = B, l_c ≤ x_c ≤ u_c, solved exactly on a grid:
    best_c(b) = max_j best_{c−1}(b − j) + r_c(l_c + j·step). Works for S-curves, where greedy
    marginal allocation or a gradient method can stop at a local optimum.
    """
    step = budget / grid if budget > 0 else 0.0
    best = np.zeros(grid + 1)
    choices = []
    b = np.arange(grid + 1)
    for c in curves.names:
        room = high[c] - low[c]
        most = grid if step == 0 else min(grid, int(math.floor(min(room, budget) / step + 1e-9)))
        gain = curves.response(c, low[c] + np.arange(most + 1) * step)
        j = np.arange(most + 1)
        total = np.full((grid + 1, most + 1), -np.inf)
        valid = b[:, None] >= j[None, :]
        shifted = np.where(valid, b[:, None] - j[None, :], 0)
        total[valid] = (best[shifted] + gain[None, :])[valid]
        choice = np.argmax(total, axis=1)
        best = total[b, choice]
        choices.append(choice)
    return best, choices, step


def _trace(curves: Curves, choices: list[np.ndarray], low: dict, step: float, at: int) -> dict[str, float]:
    spend = {}
    for c, choice in zip(reversed(curves.names), reversed(choices)):
        j = int(choice[at])
        spend[c] = low[c] + j * step
        at -= j
    return {c: spend[c] for c in curves.names}


def _polish(curves: Curves, spend: dict, low: dict, high: dict) -> dict[str, float]:
    """Move spend from the channel whose next unit adds least to the one where it adds most, while that helps.

    Takes the grid optimum off the grid (the grid cannot land exactly on every bound) and never
    lowers the response: a move is kept only when the total grows, and it never crosses a bound.
    """
    spend = dict(spend)
    names = curves.names
    delta = max(sum(spend.values()), 1e-9) / 200
    floor = delta * 1e-7
    value = curves.total(spend)
    while delta > floor:
        m = {c: float(curves.marginal(c, spend[c])) for c in names}
        up = [c for c in names if spend[c] < high[c] - 1e-12]
        down = [c for c in names if spend[c] > low[c] + 1e-12]
        if not up or not down:
            break
        i, j = max(up, key=m.get), min(down, key=m.get)
        move = min(delta, high[i] - spend[i], spend[j] - low[j])
        if i == j or move <= 0:
            break
        trial = {**spend, i: spend[i] + move, j: spend[j] - move}
        trial_value = curves.total(trial)
        if trial_value > value:
            spend, value = trial, trial_value
        else:
            delta /= 2
    return spend


def _repair(spend: dict, low: dict, high: dict, total: float) -> dict[str, float]:
    """Clip into the bounds, then spread what is over or under the total across channels with room: exact."""
    spend = {c: min(max(v, low[c]), high[c]) for c, v in spend.items()}
    for _ in range(len(spend) + 1):
        gap = total - sum(spend.values())
        if abs(gap) <= 1e-9 * max(total, 1.0):
            break
        room = {c: (high[c] - v) if gap > 0 else (v - low[c]) for c, v in spend.items()}
        free = {c: r for c, r in room.items() if r > 1e-12}
        if not free:
            break
        share = sum(free.values())
        for c, r in free.items():
            spend[c] += math.copysign(min(r, abs(gap) * r / share), gap)
    return spend


def check_bounds(names: list[str], total: float, low: dict, high: dict) -> None:
    problems = [f"{c}: the lower bound {low[c]:,.2f} is above the upper bound {high[c]:,.2f}" for c in names if low[c] > high[c] + 1e-9]
    problems += [f"{c}: a bound is negative" for c in names if low[c] < 0]
    if problems:
        raise MixError("; ".join(problems) + ".")
    if total < 0:
        raise MixError("The total budget cannot be negative.")


def allocate(curves: Curves, *, total: float, low: dict[str, float], high: dict[str, float],
             current: dict[str, float], observed_max: dict[str, float], objective: str = "response",
             target: float | None = None, outcome_kind: str = "revenue", grid: int = 1000) -> dict:
    """Split `total` per period across channels within [low, high]; explain each move; plain JSON.

    objective "response": spend exactly `total`, as much response as possible.
    objective "efficiency": spend at most `total`, as much response as possible while the media
    return stays at or above the target: ROI ≥ target for a revenue outcome (response/spend ≥ 1 + target),
    CPA ≤ target for a count outcome (spend/response ≤ target).
    """
    names = curves.names
    check_bounds(names, total, low, high)
    floor, ceiling = sum(low[c] for c in names), sum(high[c] for c in names)
    if objective == "response":
        if floor > total + 1e-9:
            raise MixError(f"The lower bounds add up to {floor:,.2f}, more than the budget of {total:,.2f}: lower them or raise the budget.")
        if ceiling < total - 1e-9:
            raise MixError(f"The upper bounds add up to {ceiling:,.2f}, less than the budget of {total:,.2f}: raise them or lower the budget.")
    elif objective == "efficiency":
        if target is None:
            raise MixError("A target efficiency needs a target: the minimum ROI, or the highest CPA.")
        if floor > total + 1e-9:
            raise MixError(f"The lower bounds add up to {floor:,.2f}, more than the budget of {total:,.2f}.")
    else:
        raise MixError(f"Unknown objective {objective!r}.")

    room = min(total, ceiling) - floor
    best, choices, step = _dp(curves, low, high, max(room, 0.0), grid)
    frontier_spend = floor + np.arange(grid + 1) * step
    note = ""
    at = grid
    if objective == "efficiency":
        ratio = np.where(frontier_spend > 0, best / np.maximum(frontier_spend, 1e-12), np.inf)
        ok = ratio >= 1 + target if outcome_kind == "revenue" else ratio >= 1 / target
        reachable = np.flatnonzero(ok)
        if reachable.size:
            at = int(reachable.max())
        else:
            at = 0
            note = ("No spend level reaches the target, not even the lower bounds: they are kept, and the "
                    "efficiency is what they give.")
        if at == 0 and floor == 0:
            note = "No spend level reaches the target: at any spend the return stays under it, so nothing is spent."
    spend = _trace(curves, choices, low, step, at)
    spend = _polish(curves, _repair(spend, low, high, floor + at * step), low, high)
    spent = sum(spend.values())
    before = curves.total(current)
    after = curves.total(spend)
    rows = explain(curves, spend, current, low, high, observed_max, outcome_kind)
    draws_before, draws_after = curves.draw_totals(current), curves.draw_totals(spend)
    gains = (draws_after - draws_before) / np.where(draws_before > 0, draws_before, np.nan) * 100 if curves.draws else []
    frontier = [{"spend": float(s), "response": float(r)} for s, r in zip(frontier_spend[:: max(grid // 100, 1)], best[:: max(grid // 100, 1)])]
    return {
        "objective": objective, "target": target, "total": total, "spent": spent,
        "current_total": sum(current.values()),
        "response_before": before, "response_after": after,
        "gain": after - before, "gain_pct": (after - before) / before * 100 if before > 0 else None,
        "gain_pct_interval": _interval(gains) if len(gains) else None,
        "efficiency_before": _efficiency(before, sum(current.values()), outcome_kind),
        "efficiency_after": _efficiency(after, spent, outcome_kind),
        "channels": rows, "frontier": frontier, "note": note,
        "warnings": [r["warning"] for r in rows if r["warning"]],
        "bounds_respected": all(low[c] - 1e-6 <= spend[c] <= high[c] + 1e-6 for c in names)
                            and (abs(spent - total) <= 1e-6 * max(total, 1) if objective == "response" else spent <= total + 1e-6),
    }


def _efficiency(response: float, spend: float, outcome_kind: str) -> float | None:
    """ROI (response/spend − 1) for revenue, CPA (spend/response) for counts."""
    if outcome_kind == "revenue":
        return response / spend - 1 if spend > 0 else None
    return spend / response if response > 0 else None


def explain(curves: Curves, spend: dict, current: dict, low: dict, high: dict, observed_max: dict, outcome_kind: str) -> list[dict]:
    """Per channel: from, to, the response each gives, the marginal return at both, and why it moved."""
    marginal_after = {c: float(curves.marginal(c, spend[c])) for c in curves.names}
    free = [m for c, m in marginal_after.items() if low[c] + 1e-6 < spend[c] < high[c] - 1e-6]
    level = float(np.median(free)) if free else None
    unit = "return per unit of spend" if outcome_kind == "revenue" else "outcomes per unit of spend"
    rows = []
    for c in curves.names:
        before, after = current[c], spend[c]
        m0, m1 = float(curves.marginal(c, before)), marginal_after[c]
        change = after - before
        if after <= low[c] + 1e-6 and change < 0:
            why = f"Cut to its lower bound: the next unit here adds {m1:.3g} ({unit}), less than elsewhere."
        elif after >= high[c] - 1e-6 and change > 0:
            why = f"Raised to its upper bound: at {after:,.0f} the next unit still adds {m1:.3g}, more than elsewhere."
        elif after <= low[c] + 1e-6:
            why = f"Held at its lower bound: the next unit adds {m1:.3g}, less than elsewhere."
        elif after >= high[c] - 1e-6:
            why = f"Held at its upper bound: the next unit still adds {m1:.3g}, more than elsewhere."
        elif abs(change) <= 0.005 * max(before, 1e-9):
            why = f"Kept: the next unit adds {m0:.3g} here, as much as elsewhere."
        elif change > 0:
            why = (f"More: at current spend the next unit adds {m0:.3g}; it gets more until the next unit adds "
                   f"{m1:.3g}, as much as in the channels still free to move.")
            if level is not None and m0 < level:
                why += " Its return per unit rises with spend here (the steep part of an S-curve), so more pays."
        else:
            why = (f"Less: at current spend the next unit adds only {m0:.3g}; it gives up spend until the next unit "
                   f"adds {m1:.3g}, as much as elsewhere.")
        warning = ""
        if after > observed_max[c] * 1.0001:
            warning = (f"{c}: {after:,.0f} per period is above the most ever spent ({observed_max[c]:,.0f}); "
                       "the curve there is extrapolated from the fitted saturation.")
        rows.append({"name": c, "from": before, "to": after, "change": change,
                     "change_pct": change / before * 100 if before > 0 else None,
                     "low": low[c], "high": high[c] if math.isfinite(high[c]) else None,  # JSON has no infinity
                     "response_from": float(curves.response(c, before)), "response_to": float(curves.response(c, after)),
                     "mroas_from": m0, "mroas_to": m1, "why": why, "warning": warning})
    return rows


def bounds_from(current: dict[str, float], mode: str, bounds: dict[str, tuple[float, float]]) -> tuple[dict, dict]:
    """Per channel (low, high) per period: as given ("absolute"), or as percentages of current spend ("relative")."""
    low, high = {}, {}
    for c, value in current.items():
        lo, hi = bounds.get(c, (0.0, None) if mode == "absolute" else (0.0, 200.0))
        if mode == "relative":
            low[c], high[c] = value * lo / 100, value * (hi if hi is not None else 200.0) / 100
        else:
            low[c], high[c] = float(lo), float(hi) if hi is not None else math.inf
    return low, high
