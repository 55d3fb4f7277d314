"""Marketing-mix model (pure): carryover and saturation transforms, a fit that recovers simulated truth,
the job's report, and an allocator that spends exactly the budget within bounds at the global optimum."""

import json
import math

import numpy as np
import pytest

from ml import mmm

WEEK = 365.25 / 7


# -- a simulated mix, built without the module's own transforms -----------------------------------------------------


def geometric_level(x: np.ndarray, theta: float) -> np.ndarray:
    level, out = 0.0, np.empty(len(x))
    for t, value in enumerate(x):
        level = theta * level + (1 - theta) * value
        out[t] = level
    return out


def weibull_weights(shape: float, scale: float, lags: int = 13) -> np.ndarray:
    w = np.exp(-((np.arange(lags) / scale) ** shape))
    return w / w.sum()


def hill(u, k, s):
    u = np.asarray(u, float)
    return u ** s / (u ** s + k ** s)


# theta (geometric) or (shape, scale) (Weibull), K, S, β, mean spend when on
GEOMETRIC = {"tv": dict(theta=0.6, k=0.8, s=2.0, beta=500.0, mean=100.0),
             "search": dict(theta=0.2, k=0.6, s=1.2, beta=300.0, mean=50.0)}
WEIBULL = {"tv": dict(shape=2.0, scale=4.0, k=0.8, s=2.0, beta=500.0, mean=100.0),
           "radio": dict(shape=0.8, scale=1.5, k=0.6, s=1.2, beta=300.0, mean=40.0)}


def simulate(truth: dict, seed: int, n: int = 208, noise: float = 10.0, adstock: str = "geometric",
             controls: dict | None = None) -> mmm.MixData:
    """Weekly outcome = 1000 + trend 200 + yearly season + Σ β·hill(level / x̄) + N(0, noise); spend is off
    about 30 % of weeks and uniform on 0–3× its mean otherwise, so the whole curve is seen."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 1000 + 200 * t / (n - 1) + 150 * np.sin(2 * np.pi * t / WEEK) + 80 * np.cos(2 * np.pi * t / WEEK)
    spend = {}
    for name, p in truth.items():
        x = np.where(rng.random(n) < 0.7, rng.uniform(0, 3 * p["mean"], n), 0.0)
        spend[name] = x
        if adstock == "geometric":
            level = geometric_level(x, p["theta"])
        else:
            level = np.convolve(x, weibull_weights(p["shape"], p["scale"]))[:n]
        y = y + p["beta"] * hill(level / x[x > 0].mean(), p["k"], p["s"])
    return mmm.MixData(spend=spend, outcome=y + rng.normal(0, noise, n), controls=controls or {})


# -- transforms -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, a, b", [("geometric", 0.0, 0.0), ("geometric", 0.7, 0.0), ("weibull", 2.0, 4.0),
                                        ("weibull", 0.6, 1.5), ("none", 0.0, 0.0)])
def test_carryover_weights_sum_to_one_and_never_grow_with_the_lag(kind, a, b):
    w = mmm.weights(kind, a, b, 13)
    assert len(w) == 13
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert (np.diff(w) <= 1e-15).all()
    if kind == "geometric" and a > 0:
        np.testing.assert_allclose(w[1:] / w[:-1], a)
    if kind == "weibull":
        np.testing.assert_allclose(w, weibull_weights(a, b))


def test_an_unknown_adstock_is_refused():
    with pytest.raises(mmm.MixError, match="Unknown adstock"):
        mmm.weights("exponential", 0.5, 0.0, 13)


@pytest.mark.parametrize("kind, a, b", [("geometric", 0.8, 0.0), ("weibull", 2.0, 4.0), ("weibull", 0.6, 1.5)])
def test_a_constant_spend_stays_itself_after_warm_up(kind, a, b):
    level = mmm.adstock(np.full(200, 50.0), kind, a, b, 13)
    warm = 100 if kind == "geometric" else 12  # 0.8^100 ≈ 2e-10; Weibull's window is 13 periods
    np.testing.assert_allclose(level[warm:], 50.0, rtol=1e-8)
    assert level[0] < 50.0  # while carryover builds up the level is below the spend


@pytest.mark.parametrize("kind, a, b", [("geometric", 0.8, 0.0), ("geometric", 0.3, 0.0), ("weibull", 2.0, 4.0),
                                        ("weibull", 0.6, 1.5)])
def test_a_one_off_spend_keeps_its_total_effect_spread_over_time(kind, a, b):
    x = np.zeros(400)
    x[5] = 1000.0
    level = mmm.adstock(x, kind, a, b, 13)
    assert level[:5].sum() == 0.0
    assert level.sum() == pytest.approx(1000.0, rel=1e-9)
    assert level[5] < 1000.0


@pytest.mark.parametrize("theta", [0.0, 0.35, 0.7, 0.9])
def test_geometric_adstock_by_recursion_equals_a_convolution_with_its_weights(theta):
    x = np.random.default_rng(0).uniform(0, 100, 150)
    explicit = np.convolve(x, mmm.weights("geometric", theta, 0.0, 600))[: len(x)]
    np.testing.assert_allclose(mmm.adstock(x, "geometric", theta, 0.0, 13), explicit, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mmm.adstock(x, "geometric", theta, 0.0, 13), geometric_level(x, theta), rtol=1e-9)


@pytest.mark.parametrize("k, s", [(0.5, 1.0), (1.3, 2.5), (2.0, 0.7)])
def test_hill_is_zero_without_spend_half_at_k_and_tends_to_one(k, s):
    assert mmm.hill(np.array([0.0]), k, s)[0] == 0.0
    assert mmm.hill(np.array([k]), k, s)[0] == pytest.approx(0.5)
    assert mmm.hill(np.array([1e6 * k]), k, s)[0] == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(mmm.hill(np.array([0.3, 1.7]), k, s), hill([0.3, 1.7], k, s))


@pytest.mark.parametrize("k, s", [(0.5, 1.0), (1.3, 2.5), (2.0, 0.7), (0.8, 4.0)])
def test_hill_slope_matches_a_numerical_derivative(k, s):
    u = np.linspace(0.05, 5, 60)
    h = 1e-6
    numerical = (mmm.hill(u + h, k, s) - mmm.hill(u - h, k, s)) / (2 * h)
    np.testing.assert_allclose(mmm.hill_slope(u, k, s), numerical, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind, theta", [("geometric", None), ("geometric", 0.9), ("weibull", None)])
def test_the_jacobian_matches_finite_differences_of_the_prediction(kind, theta):
    data = simulate(GEOMETRIC, seed=3, n=120, controls={"price": np.random.default_rng(9).normal(10, 2, 120)})
    spec = mmm.Spec.of(data, mmm.Options(adstock=kind))
    base = spec.baseline_design(data)
    low, high = spec.bounds()
    rng = np.random.default_rng(1)
    c = len(spec.channels)
    nonlinear = low[: 4 * c] + rng.uniform(0.2, 0.8, 4 * c) * (high[: 4 * c] - low[: 4 * c])
    if theta is not None:  # at the upper bound of θ the adstock column is a backward difference
        nonlinear[0] = theta
    p = np.r_[nonlinear, rng.uniform(0.5, 2.0, c), rng.normal(0, 1, base.shape[1])]
    jacobian = mmm._jacobian(spec, data, p, base)
    numerical = np.empty_like(jacobian)
    for j in range(len(p)):
        h = 1e-6 * max(1.0, abs(p[j]))
        up, down = p.copy(), p.copy()
        up[j] += h
        down[j] -= h
        # the fit works on outcome / y_scale; _predict returns outcome units
        numerical[:, j] = (mmm._predict(spec, data, up, base) - mmm._predict(spec, data, down, base)) / (2 * h) / spec.y_scale
    scale = np.abs(numerical).max(axis=0) + 1e-12
    assert (np.abs(jacobian - numerical).max(axis=0) / scale).max() < 1e-4
    assert np.abs(numerical).max(axis=0)[[0, 2, 3, 4 * c, 5 * c]].min() > 1e-3  # the columns checked carry signal


def test_carryover_summarises_a_geometric_decay():
    spec = mmm.Spec.of(simulate(GEOMETRIC, seed=0, n=60), mmm.Options())
    summary = mmm.carryover(spec, {"a": 0.75, "b": 0.0})
    assert summary["weights"][:3] == [0.25, 0.1875, 0.1406]
    assert summary["mean_lag"] == pytest.approx(0.75 / 0.25, rel=1e-6)  # θ / (1 − θ)
    assert summary["half_life"] == 2  # 0.25, 0.4375, 0.578: half has shown by lag 2


# -- fitting recovers a simulated truth ---------------------------------------------------------------------------------


def curve_error(fitted, data, name, truth) -> float:
    """The largest gap between the fitted and the true response over the adstocked spend seen, as a share of β."""
    x = data.spend[name]
    u = np.linspace(0, geometric_level(x, truth["theta"]).max() / x[x > 0].mean(), 50)
    p = fitted.channel_params[name]
    error = p["beta"] * hill(u, p["k"], p["s"]) - truth["beta"] * hill(u, truth["k"], truth["s"])
    return float(np.abs(error).max() / truth["beta"])


def contribution_error(fitted, data, name, truth) -> float:
    x = data.spend[name]
    true = (truth["beta"] * hill(geometric_level(x, truth["theta"]) / x[x > 0].mean(), truth["k"], truth["s"])).sum()
    return float(fitted.contributions(data)[0][name].sum() / true - 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_it_recovers_carryover_and_the_response_curve_over_the_spend_seen(seed):
    data = simulate(GEOMETRIC, seed)
    fitted = mmm.fit(data, mmm.Options(starts=4))
    for name, truth in GEOMETRIC.items():
        assert fitted.channel_params[name]["a"] == pytest.approx(truth["theta"], abs=0.05), name
        assert curve_error(fitted, data, name, truth) < 0.12, name
        assert -0.2 < contribution_error(fitted, data, name, truth) < 0.05, name
    assert mmm.scores(data.outcome, fitted.predict(data))["r2"] > 0.98


@pytest.mark.parametrize("seed", [0, 1])
def test_it_recovers_known_adstock_and_saturation_parameters(seed):
    data = simulate(GEOMETRIC, seed)
    fitted = mmm.fit(data, mmm.Options(starts=4))
    for name, truth in GEOMETRIC.items():
        p = fitted.channel_params[name]
        assert p["a"] == pytest.approx(truth["theta"], abs=0.05), name
        assert p["k"] == pytest.approx(truth["k"], rel=0.15), name
        assert p["s"] == pytest.approx(truth["s"], rel=0.2), name
        assert p["beta"] == pytest.approx(truth["beta"], rel=0.2), name


@pytest.mark.parametrize("seed", [0, 1])
def test_it_recovers_each_channels_contribution_without_shrinking_it(seed):
    data = simulate(GEOMETRIC, seed)
    fitted = mmm.fit(data, mmm.Options(starts=4))
    for name, truth in GEOMETRIC.items():
        assert abs(contribution_error(fitted, data, name, truth)) < 0.05, name
        assert curve_error(fitted, data, name, truth) < 0.04, name


@pytest.mark.parametrize("seed", [0, 1])
def test_it_recovers_a_weibull_carryover(seed):
    data = simulate(WEIBULL, seed, adstock="weibull")
    fitted = mmm.fit(data, mmm.Options(adstock="weibull", starts=4))
    for name, truth in WEIBULL.items():
        p = fitted.channel_params[name]
        shown = mmm.carryover(fitted.spec, p)["weights"]
        np.testing.assert_allclose(shown, weibull_weights(truth["shape"], truth["scale"]), atol=0.04, err_msg=name)
    tv = fitted.channel_params["tv"]
    assert tv["a"] == pytest.approx(2.0, rel=0.15)  # a delayed, flat-topped carryover, not a geometric one
    assert tv["b"] == pytest.approx(4.0, rel=0.1)


# -- scores ---------------------------------------------------------------------------------------------------------------


def test_scores_match_values_computed_by_hand():
    actual, predicted = [2.0, 0.0, 4.0, 6.0], [3.0, 1.0, 4.0, 4.0]
    # errors −1, −1, 0, 2: SSE 6; mean 3, SST 1 + 9 + 1 + 9 = 20; RMSE √1.5 over a range of 6;
    # MAPE skips the zero actual: (1/2 + 0/4 + 2/6) / 3
    got = mmm.scores(actual, predicted)
    assert got["r2"] == pytest.approx(1 - 6 / 20)
    assert got["nrmse"] == pytest.approx(math.sqrt(1.5) / 6)
    assert got["mape"] == pytest.approx((0.5 + 0 + 1 / 3) / 3)


def test_scores_are_none_where_they_are_undefined():
    assert mmm.scores([5.0, 5.0, 5.0], [4.0, 5.0, 6.0]) == {"r2": None, "nrmse": None, "mape": pytest.approx(2 / 15)}
    assert mmm.scores([0.0, 0.0], [1.0, 0.0])["mape"] is None


def test_the_holdout_is_the_last_fifth_or_an_explicit_mask():
    train, test = mmm.holdout_rows(10, mmm.Options())
    assert train.tolist() == list(range(8)) and test.tolist() == [8, 9]
    mask = np.zeros(10, bool)
    mask[[1, 4]] = True
    train, test = mmm.holdout_rows(10, mmm.Options(holdout_mask=mask))
    assert test.tolist() == [1, 4] and len(train) == 8


# -- the job ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job():
    data = simulate(GEOMETRIC, seed=4)
    progress = []
    params, metrics, report = mmm.run(data, mmm.Options(starts=4, bootstrap=12), lambda f, m: progress.append((f, m)))
    return data, params, metrics, report, progress


def test_run_returns_plain_json_and_reports_progress_forward(job):
    data, params, metrics, report, progress = job
    for part in (params, metrics, report):
        assert json.loads(json.dumps(part)) == part
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1
    assert metrics["r2_all"] > 0.98 and metrics["r2_holdout"] > 0.9 and metrics["nrmse_holdout"] < 0.1


def test_run_scores_the_last_fifth_without_fitting_it():
    data = simulate(GEOMETRIC, seed=5)
    _, metrics, _ = mmm.run(data, mmm.Options(starts=2, bootstrap=0))
    assert (metrics["fit_periods"], metrics["holdout_periods"]) == (166, 42)  # 208 − round(41.6)
    # the holdout's outcomes in reverse order: the same spread (so the same scaling), no longer matching the spend
    reversed_ = mmm.MixData(spend=data.spend, outcome=np.r_[data.outcome[:166], data.outcome[166:][::-1]])
    _, moved, _ = mmm.run(reversed_, mmm.Options(starts=2, bootstrap=0))
    assert moved["r2_train"] == pytest.approx(metrics["r2_train"], abs=1e-9)  # the holdout never entered the fit
    assert moved["r2_holdout"] < metrics["r2_holdout"] - 0.5


def test_the_report_decomposes_the_fit_into_baseline_and_channels(job):
    data, params, metrics, report, _ = job
    media = np.sum([report["media"][c] for c in data.channels], axis=0)
    np.testing.assert_allclose(np.array(report["baseline"]) + media, report["fitted"], rtol=1e-9)
    assert metrics["r2_all"] == pytest.approx(mmm.scores(data.outcome, report["fitted"])["r2"])
    assert sum(ch["share"] for ch in report["channels"]) == pytest.approx(1.0)


def test_each_channel_reports_its_spend_contribution_and_return(job):
    data, params, metrics, report, _ = job
    for ch in report["channels"]:
        name = ch["name"]
        assert ch["spend"] == pytest.approx(data.spend[name].sum())
        assert ch["contribution"] == pytest.approx(sum(report["media"][name]))
        assert ch["roas"] == pytest.approx(ch["contribution"] / ch["spend"])
        low, high = ch["contribution_interval"]
        assert low < high and ch["roas_interval"][0] < ch["roas_interval"][1]
        assert ch["roas_interval"] == pytest.approx([low / ch["spend"], high / ch["spend"]])
        assert ch["current"] == pytest.approx(data.spend[name][-13:].mean())
        assert ch["observed_max"] == data.spend[name].max()
        # against the simulated channel's own contribution
        truth = GEOMETRIC[name]
        x = data.spend[name]
        true_contribution = (truth["beta"] * hill(geometric_level(x, truth["theta"]) / x[x > 0].mean(), truth["k"],
                                                  truth["s"])).sum()
        assert ch["contribution"] == pytest.approx(true_contribution, rel=0.2), name


def test_each_channels_return_interval_contains_its_estimate(job):
    data, params, metrics, report, _ = job
    for ch in report["channels"]:
        low, high = ch["contribution_interval"]
        assert low <= ch["contribution"] <= high, ch["name"]
        assert ch["roas_interval"][0] <= ch["roas"] <= ch["roas_interval"][1], ch["name"]


def test_each_channel_curve_is_its_steady_state_response(job):
    data, params, metrics, report, _ = job
    for ch in report["channels"]:
        curve, p = ch["curve"], ch["params"]
        x = np.array(curve["x"])
        assert len(x) == len(curve["y"]) == len(curve["low"]) == len(curve["high"]) == 61
        assert x[0] == 0 and x[-1] == pytest.approx(max(2 * ch["observed_max"], 1.5 * ch["current"]))
        np.testing.assert_allclose(curve["y"], p["beta"] * hill(x / p["scale"], p["k"], p["s"]), rtol=1e-9)
        assert (np.array(curve["low"]) <= np.array(curve["high"]) + 1e-9).all()
        assert p["scale"] == pytest.approx(data.spend[ch["name"]][data.spend[ch["name"]] > 0].mean())


def test_the_plateau_is_where_the_next_unit_first_returns_less_than_the_threshold_past_the_peak(job):
    data, params, metrics, report, _ = job
    curves = mmm.Curves.from_params(params)
    assert report["threshold"] == 1.0  # revenue: the next unit returns less than itself
    for ch in report["channels"]:
        name, plateau = ch["name"], ch["plateau"]
        upto = 2 * max(2 * ch["observed_max"], 1.5 * ch["current"])
        step = upto / 2000
        xs = np.linspace(0, upto, 2001)[1:]
        peak = xs[np.argmax(curves.marginal(name, xs))]
        assert plateau is not None and plateau > peak, name
        assert curves.marginal(name, plateau) < 1.0 <= curves.marginal(name, plateau - step), name
        assert ch["mroas"] == pytest.approx(float(curves.marginal(name, ch["current"])))


def test_a_plateau_is_none_when_the_marginal_never_falls_under_the_threshold():
    curves = mmm.Curves({"tv": {"a": 0.5, "b": 0, "k": 1.0, "s": 1.0, "beta": 1000.0, "scale": 10.0}})
    assert curves.plateau("tv", threshold=1.0, upto=50.0) is None  # at 50 the next unit still adds 1000·10/60² ≈ 2.8
    assert curves.plateau("tv", threshold=5.0, upto=50.0) == pytest.approx(10 * (math.sqrt(20) - 1), abs=0.05)


def test_an_event_only_in_the_holdout_does_not_blow_up_the_holdout_prediction():
    n = 208
    event = np.zeros(n)
    event[[190, 191, 200]] = 1.0  # a promotion flag that never varies in the fitted 166 periods
    plain = simulate(GEOMETRIC, seed=6)
    flagged = mmm.MixData(spend=plain.spend, outcome=plain.outcome, controls={"promotion": event})
    # no ridge: it would pin the flag's coefficient at 0 and hide an unlearnable column (R² holdout −1378 with one)
    _, without, _ = mmm.run(plain, mmm.Options(starts=2, bootstrap=0, ridge=0.0))
    _, metrics, report = mmm.run(flagged, mmm.Options(starts=2, bootstrap=0, ridge=0.0))
    assert metrics["r2_holdout"] > 0.9
    assert metrics["r2_holdout"] == pytest.approx(without["r2_holdout"], abs=0.02)
    assert abs(report["coefficients"]["control promotion"]) < 100  # the full fit has no reason to use it either


def test_curves_round_trip_what_run_stored_and_give_one_total_per_draw(job):
    data, params, metrics, report, _ = job
    curves = mmm.Curves.from_params(json.loads(json.dumps(params)))
    assert curves.names == data.channels
    assert len(curves.draws) == 12
    for ch in report["channels"]:
        np.testing.assert_allclose(curves.response(ch["name"], ch["curve"]["x"]), ch["curve"]["y"], rtol=1e-12)
    current = params["current"]
    totals = curves.draw_totals(current)
    assert totals.shape == (12,)
    by_hand = [sum(d[c]["beta"] * hill(current[c] / d[c]["scale"], d[c]["k"], d[c]["s"]) for c in data.channels)
               for d in params["draws"]]
    np.testing.assert_allclose(totals, by_hand, rtol=1e-9)
    assert np.median(totals) == pytest.approx(curves.total(current), rel=0.1)


def test_run_refuses_series_too_short_for_its_channels():
    data = mmm.MixData(spend={"tv": np.ones(10), "search": np.ones(10)}, outcome=np.arange(10.0))
    with pytest.raises(mmm.MixError, match="too few"):
        mmm.run(data)


@pytest.mark.parametrize("spend, outcome, message", [
    ({}, [1.0, 2.0], "no spend column"),
    ({"tv": [1.0, 2.0, 3.0]}, [1.0, 2.0], "tv has 3 periods"),
    ({"tv": [1.0, -1.0]}, [1.0, 2.0], "tv has negative spend"),
    ({"tv": [0.0, 0.0]}, [1.0, 2.0], "tv never spends"),
    ({"tv": [1.0, np.nan]}, [1.0, 2.0], "tv has missing"),
])
def test_mix_data_refuses_series_it_cannot_model(spend, outcome, message):
    with pytest.raises(mmm.MixError, match=message):
        mmm.MixData(spend=spend, outcome=outcome)


# -- the allocator -------------------------------------------------------------------------------------------------------


def curves_of(**channels) -> mmm.Curves:
    """Curves from (beta, k, s, scale) per channel."""
    return mmm.Curves({c: {"a": 0.5, "b": 0.0, "beta": beta, "k": k, "s": s, "scale": scale}
                       for c, (beta, k, s, scale) in channels.items()})


def allocate(curves, total, low, high, current=None, observed_max=None, **kw):
    current = current or {c: total / len(curves.names) for c in curves.names}
    observed_max = observed_max or {c: 1e12 for c in curves.names}
    return mmm.allocate(curves, total=total, low=low, high=high, current=current, observed_max=observed_max, **kw)


def spend_of(result) -> dict[str, float]:
    return {row["name"]: row["to"] for row in result["channels"]}


def test_the_allocation_spends_exactly_the_total_within_every_bound_over_random_instances():
    rng = np.random.default_rng(0)
    for i in range(60):
        names = [f"c{j}" for j in range(rng.integers(2, 5))]
        curves = curves_of(**{c: (rng.uniform(10, 200), rng.uniform(0.3, 3), rng.uniform(0.5, 3.5), rng.uniform(5, 50))
                              for c in names})
        low = {c: float(rng.choice([0.0, rng.uniform(0, 20)])) for c in names}
        high = {c: low[c] + float(rng.uniform(1, 80)) for c in names}
        total = float(rng.uniform(sum(low.values()), sum(high.values())))
        result = allocate(curves, total, low, high, grid=400)
        spend = spend_of(result)
        assert sum(spend.values()) == pytest.approx(total, rel=1e-9), i
        assert result["spent"] == pytest.approx(total, rel=1e-9)
        assert all(low[c] - 1e-9 <= spend[c] <= high[c] + 1e-9 for c in names), i
        assert result["bounds_respected"]
        assert result["response_after"] == pytest.approx(curves.total(spend))


def test_the_allocation_spends_a_total_equal_to_the_sum_of_the_upper_bounds():
    curves = curves_of(a=(100, 1.0, 1.0, 10), b=(80, 1.0, 1.5, 10), c=(60, 1.0, 2.0, 10))
    low, high = dict.fromkeys("abc", 0.0), dict.fromkeys("abc", 1.0)
    result = allocate(curves, 3.0, low, high)
    assert spend_of(result) == pytest.approx(high)
    assert result["bounds_respected"]


def test_an_absolute_bound_without_a_ceiling_can_be_allocated():
    curves = curves_of(a=(100, 1.0, 1.0, 10), b=(80, 1.0, 1.0, 10))
    current = {"a": 10.0, "b": 10.0}
    low, high = mmm.bounds_from(current, "absolute", {"a": (5.0, None)})
    result = allocate(curves, 20.0, low, high, current=current)
    assert result["spent"] == pytest.approx(20.0)


def test_it_moves_spend_to_the_channel_with_the_higher_marginal_return_until_they_are_equal():
    curves = curves_of(strong=(200, 1.0, 1.0, 10), weak=(100, 1.0, 1.0, 10))
    current = {"strong": 10.0, "weak": 10.0}
    assert curves.marginal("strong", 10.0) > 1.5 * curves.marginal("weak", 10.0)
    result = allocate(curves, 20.0, {"strong": 0.0, "weak": 0.0}, {"strong": 20.0, "weak": 20.0}, current=current)
    spend = spend_of(result)
    assert spend["strong"] > 12 > 8 > spend["weak"]
    marginal = {c: float(curves.marginal(c, spend[c])) for c in spend}
    assert marginal["strong"] == pytest.approx(marginal["weak"], rel=1e-3)
    # by hand: β·c/(x + c)² equal ⇒ (x_s + c)/(x_w + c) = √(β_s/β_w), with c = K·x̄ = 10 and x_s + x_w = 20
    ratio = math.sqrt(2)
    assert spend["strong"] == pytest.approx(ratio * 40 / (1 + ratio) - 10, rel=1e-3)
    assert result["gain"] > 0 and result["response_after"] == pytest.approx(curves.total(spend))
    rows = {row["name"]: row for row in result["channels"]}
    assert rows["strong"]["why"].startswith("More") and rows["weak"]["why"].startswith("Less")


def greedy(curves, total, steps=2000):
    """Each small increment to the channel whose next unit adds most: what a marginal greedy method does."""
    spend = dict.fromkeys(curves.names, 0.0)
    for _ in range(steps):
        best = max(curves.names, key=lambda c: float(curves.marginal(c, spend[c])))
        spend[best] += total / steps
    return spend


def test_it_finds_the_global_optimum_where_s_curves_make_greedy_allocation_stop_short():
    # a concave channel with a cheap first dollar, and two S-curves worth more once past their threshold
    curves = curves_of(concave=(60, 0.5, 0.7, 10), tv=(200, 1.5, 3.0, 10), video=(150, 1.0, 2.5, 10))
    total = 30.0
    bounds = dict.fromkeys(curves.names, 0.0), dict.fromkeys(curves.names, total)
    steps = 300
    grid = np.arange(steps + 1) * total / steps
    a, b = np.meshgrid(grid, grid, indexing="ij")
    rest = total - a - b
    value = curves.response("concave", a) + curves.response("tv", b) + curves.response("video", np.maximum(rest, 0))
    value[rest < -1e-9] = -np.inf
    brute = value.max()
    i, j = np.unravel_index(np.argmax(value), value.shape)
    assert curves.total(greedy(curves, total)) < 0.9 * brute  # the instance is one a greedy method gets wrong

    result = allocate(curves, total, *bounds)
    spend = spend_of(result)
    assert result["response_after"] >= brute - 1e-6
    assert result["response_after"] <= brute * 1.001  # and no better than the true optimum allows
    assert spend["concave"] == pytest.approx(grid[i], abs=2 * total / steps)
    assert spend["tv"] == pytest.approx(grid[j], abs=2 * total / steps)
    assert sum(spend.values()) == pytest.approx(total)


@pytest.mark.parametrize("low, high, total, message", [
    ({"a": 6.0, "b": 6.0}, {"a": 10.0, "b": 10.0}, 10.0, "lower bounds add up to 12.00, more than the budget of 10.00"),
    ({"a": 0.0, "b": 0.0}, {"a": 4.0, "b": 4.0}, 10.0, "upper bounds add up to 8.00, less than the budget of 10.00"),
    ({"a": 5.0, "b": 0.0}, {"a": 3.0, "b": 10.0}, 10.0, "a: the lower bound 5.00 is above the upper bound 3.00"),
    ({"a": -1.0, "b": 0.0}, {"a": 3.0, "b": 10.0}, 10.0, "a: a bound is negative"),
    ({"a": 0.0, "b": 0.0}, {"a": 3.0, "b": 10.0}, -1.0, "budget cannot be negative"),
])
def test_bounds_that_cannot_hold_are_refused_with_the_reason(low, high, total, message):
    curves = curves_of(a=(100, 1.0, 1.0, 10), b=(80, 1.0, 1.0, 10))
    with pytest.raises(mmm.MixError, match=message):
        allocate(curves, total, low, high)


def test_an_unknown_objective_or_a_missing_target_is_refused():
    curves = curves_of(a=(100, 1.0, 1.0, 10))
    with pytest.raises(mmm.MixError, match="needs a target"):
        allocate(curves, 10.0, {"a": 0.0}, {"a": 20.0}, objective="efficiency")
    with pytest.raises(mmm.MixError, match="Unknown objective"):
        allocate(curves, 10.0, {"a": 0.0}, {"a": 20.0}, objective="reach")


EFFICIENT = {"a": (100, 1.0, 1.0, 10), "b": (60, 1.0, 1.5, 10)}


@pytest.mark.parametrize("target", [1.0, 2.0])
def test_an_efficiency_target_spends_the_most_that_keeps_the_roi_above_it(target):
    curves = curves_of(**EFFICIENT)
    low, high = {"a": 1.0, "b": 1.0}, {"a": 100.0, "b": 100.0}
    result = allocate(curves, 100.0, low, high, objective="efficiency", target=target)
    spend = spend_of(result)
    spent = sum(spend.values())
    assert result["spent"] == pytest.approx(spent) and spent <= 100.0
    roi = curves.total(spend) / spent - 1
    assert roi >= target
    assert result["efficiency_after"] == pytest.approx(roi)
    assert result["bounds_respected"] and result["note"] == ""
    # it stops where the target binds: the best split of 5 % more would fall under it
    more = allocate(curves, spent * 1.05, low, high)
    assert more["response_after"] / (spent * 1.05) - 1 < target


def test_a_tighter_efficiency_target_spends_less():
    curves = curves_of(**EFFICIENT)
    low, high = {"a": 1.0, "b": 1.0}, {"a": 100.0, "b": 100.0}
    spent = [allocate(curves, 100.0, low, high, objective="efficiency", target=t)["spent"] for t in (0.5, 1.0, 2.0, 3.0)]
    assert spent == sorted(spent, reverse=True) and spent[0] > 1.5 * spent[-1]


def test_a_cpa_target_keeps_the_cost_per_outcome_under_it():
    curves = curves_of(a=(10, 1.0, 1.0, 10), b=(6, 1.0, 1.5, 10))  # outcomes, not money
    low, high = {"a": 1.0, "b": 1.0}, {"a": 100.0, "b": 100.0}
    loose = allocate(curves, 100.0, low, high, objective="efficiency", target=4.0, outcome_kind="count")
    tight = allocate(curves, 100.0, low, high, objective="efficiency", target=2.5, outcome_kind="count")
    for result, target in ((loose, 4.0), (tight, 2.5)):
        spend = spend_of(result)
        assert sum(spend.values()) / curves.total(spend) <= target
        assert result["efficiency_after"] == pytest.approx(sum(spend.values()) / curves.total(spend))
    assert tight["spent"] < loose["spent"] <= 100.0


def test_an_unreachable_target_keeps_the_lower_bounds_and_says_so():
    curves = curves_of(**EFFICIENT)
    low, high = {"a": 5.0, "b": 3.0}, {"a": 100.0, "b": 100.0}
    result = allocate(curves, 100.0, low, high, objective="efficiency", target=50.0)
    assert spend_of(result) == pytest.approx(low)
    assert "No spend level reaches the target" in result["note"]
    assert result["efficiency_after"] < 50.0


def test_an_unreachable_target_with_no_lower_bounds_spends_nothing_and_says_so():
    curves = curves_of(**EFFICIENT)
    result = allocate(curves, 100.0, {"a": 0.0, "b": 0.0}, {"a": 100.0, "b": 100.0}, objective="efficiency", target=50.0)
    assert result["spent"] == 0.0 and result["efficiency_after"] is None
    assert "No spend level reaches the target" in result["note"]


def test_spend_above_the_most_ever_seen_is_flagged_by_channel():
    curves = curves_of(a=(300, 1.0, 1.0, 10), b=(50, 1.0, 1.0, 10))
    current, observed_max = {"a": 10.0, "b": 10.0}, {"a": 15.0, "b": 40.0}
    result = allocate(curves, 20.0, {"a": 0.0, "b": 0.0}, {"a": 20.0, "b": 20.0}, current=current,
                      observed_max=observed_max)
    spend = spend_of(result)
    assert spend["a"] > 15.0 and spend["b"] < 40.0
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith("a: ")
    assert "above the most ever spent (15)" in result["warnings"][0]


def test_bounds_are_percentages_of_current_spend_or_absolute_amounts():
    current = {"tv": 100.0, "search": 50.0}
    low, high = mmm.bounds_from(current, "relative", {"tv": (70.0, 150.0)})
    assert (low, high) == ({"tv": 70.0, "search": 0.0}, {"tv": 150.0, "search": 100.0})  # search: 0–200 %
    low, high = mmm.bounds_from(current, "relative", {"tv": (50.0, None)})
    assert (low["tv"], high["tv"]) == (50.0, 200.0)
    low, high = mmm.bounds_from(current, "absolute", {"tv": (20.0, 80.0)})
    assert (low, high) == ({"tv": 20.0, "search": 0.0}, {"tv": 80.0, "search": math.inf})


def test_the_allocation_reports_the_gain_with_an_interval_from_the_draws(job):
    data, params, metrics, report, _ = job
    curves = mmm.Curves.from_params(params)
    current = params["current"]
    low, high = mmm.bounds_from(current, "relative", {c: (50.0, 150.0) for c in current})
    result = mmm.allocate(curves, total=sum(current.values()), low=low, high=high, current=current,
                          observed_max=params["observed_max"])
    assert result["response_before"] == pytest.approx(curves.total(current))
    assert result["gain"] >= -1e-9  # the current split is feasible, so the optimum is no worse
    assert result["gain_pct"] == pytest.approx(100 * result["gain"] / result["response_before"])
    lo, hi = result["gain_pct_interval"]
    assert lo <= hi
    frontier = result["frontier"]
    assert frontier[0]["spend"] == pytest.approx(sum(low.values()))
    assert frontier[-1]["spend"] == pytest.approx(sum(current.values()))
    assert [p["response"] for p in frontier] == sorted(p["response"] for p in frontier)
