"""Throughput statistics and the trial's stopping rule, on samples with known distributions (no timing involved).

Random samples come from seeded generators, so every test is deterministic; the coverage tests check that a
95% interval covers the true value about 95% of the time over many simulated runs.
"""

from __future__ import annotations

import math
import random

import pytest

from tuner.models.arch import Architecture
from tuner.trial.distributed import DistEnv
from tuner.trial.spec import TrialResult, TrialSpec
from tuner.trial.stats import (
    Measurement,
    combine,
    converged,
    detect_warmup,
    measure,
    paired_ratio,
    pooled_between,
    step_measurement,
    t_quantile,
    unpaired_ratio,
)

TINY = Architecture(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, intermediate_size=128, vocab_size=512)  # fmt: skip


def lognormal(rng: random.Random, center: float, sd: float, n: int) -> list[float]:
    return [center * math.exp(rng.gauss(0, sd)) for _ in range(n)]


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=4e-3)


def test_warmup_steps_that_are_clearly_slower_are_skipped() -> None:
    # the first step is always skipped; the second is twice the rest: skipped too; the rest is kept
    assert detect_warmup([5.0, 2.0, 1.0, 1.02, 0.99, 1.01, 1.0, 0.98]) == 2
    # a noisy run without a warm-up trend keeps everything after the minimum
    assert detect_warmup([1.0, 1.04, 0.97, 1.02, 0.99, 1.03, 0.98], minimum=1) == 1
    # never more than half the steps, and a short run keeps what it has
    assert detect_warmup([9.0, 8.0, 7.0, 6.0, 1.0, 1.0], minimum=0) <= 3
    assert detect_warmup([3.0, 1.0, 1.0], minimum=1) == 1


def test_step_measurement_skips_the_warmup_and_reports_the_median_tokens_per_s() -> None:
    m = step_measurement([5.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.25, 0.8], tokens_per_step=1000.0)
    assert m.warmup == 2 and m.n == 6
    assert m.median == pytest.approx(1000.0)
    assert m.lo <= 1000.0 <= m.hi


def test_interval_narrows_with_more_steps_and_converges() -> None:
    rng = random.Random(1)
    few = measure(lognormal(rng, 1000, 0.05, 5))
    many = measure(lognormal(rng, 1000, 0.05, 80))
    assert many.rel_half < few.rel_half
    assert not converged(few, 0.02) and converged(many, 0.02)
    # fewer than the minimum never converges, however tight
    tight = measure([1000.0, 1000.1, 999.9, 1000.0])
    assert tight.rel_half < 0.02 and not converged(tight, 0.02, min_samples=5)


def test_a_stalled_step_moves_the_median_but_barely() -> None:
    rng = random.Random(2)
    xs = lognormal(rng, 1000, 0.02, 30)
    stalled = xs[:-1] + [100.0]  # another process held the CPU for one step
    assert measure(stalled).median == pytest.approx(measure(xs).median, rel=0.01)


def test_the_95_percent_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    rng = random.Random(3)
    hits = 0
    for _ in range(1000):
        m = measure(lognormal(rng, 1000, 0.08, 20))
        hits += m.lo <= 1000 <= m.hi
    assert 0.92 <= hits / 1000 <= 0.99


def test_a_single_run_is_widened_by_the_run_to_run_noise() -> None:
    rng = random.Random(4)
    m = measure(lognormal(rng, 1000, 0.05, 50))
    alone = combine([m])
    noisy = combine([m], between=0.05)
    assert noisy.rel_half > alone.rel_half > 0
    assert combine([Measurement.exactly(1000.0)], between=0.05).exact  # no spread known: stays exact


def test_runs_combine_into_their_geometric_mean_and_the_between_noise_is_pooled() -> None:
    rng = random.Random(5)
    runs_a = [measure(lognormal(rng, 1000 * math.exp(rng.gauss(0, 0.06)), 0.03, 40)) for _ in range(6)]
    runs_b = [measure(lognormal(rng, 500 * math.exp(rng.gauss(0, 0.06)), 0.03, 40)) for _ in range(6)]
    sigma, df = pooled_between([runs_a, runs_b, [runs_a[0]]])
    assert df == 10 and 0.03 < sigma < 0.11  # 6% between-run noise plus the runs' own error
    est = combine(runs_a, sigma)
    assert est.runs == 6 and est.lo < est.center < est.hi
    assert est.center == pytest.approx(math.exp(sum(math.log(r.median) for r in runs_a) / 6))
    assert pooled_between([[Measurement.exactly(1.0), Measurement.exactly(2.0)]]) == (None, 0)


def test_paired_rounds_cancel_a_drift_that_unpaired_runs_cannot() -> None:
    """The machine slows down over time (another job starts); A is 5% faster than B in every round."""
    rng = random.Random(6)
    pairs = []
    for k in range(4):
        load = 1.0 - 0.15 * k  # 15% slower every round
        a = measure(lognormal(rng, 1050 * load, 0.01, 30))
        b = measure(lognormal(rng, 1000 * load, 0.01, 30))
        pairs.append((a, b))
    paired = paired_ratio(pairs)
    assert paired.a_faster and paired.center == pytest.approx(1.05, rel=0.01)
    # the same runs, unpaired: the drift makes both estimates so wide that A and B cannot be told apart
    sigma, df = pooled_between([[a for a, _ in pairs], [b for _, b in pairs]])
    unpaired = unpaired_ratio(combine([a for a, _ in pairs], sigma), combine([b for _, b in pairs], sigma))
    assert not unpaired.separated


def test_paired_interval_coverage_and_the_pooled_noise_for_few_rounds() -> None:
    rng = random.Random(7)
    hits = 0
    for _ in range(400):
        pairs = []
        for _ in range(3):
            drift = math.exp(rng.gauss(0, 0.05))
            a = measure(lognormal(rng, 1100 * drift * math.exp(rng.gauss(0, 0.03)), 0.04, 25))
            b = measure(lognormal(rng, 1000 * drift * math.exp(rng.gauss(0, 0.03)), 0.04, 25))
            pairs.append((a, b))
        r = paired_ratio(pairs, between=0.04, between_df=20)
        hits += r.lo <= 1.1 <= r.hi
    assert 0.90 <= hits / 400 <= 0.995
    # exact measurements give an exact ratio
    exact = paired_ratio([(Measurement.exactly(2.0), Measurement.exactly(1.0))])
    assert exact.center == exact.lo == exact.hi == pytest.approx(2.0)


def test_a_result_without_samples_is_exact_and_one_with_them_carries_its_interval() -> None:
    spec = TrialSpec(arch=TINY, cutoff_len=10, per_device_train_batch_size=2, gradient_accumulation_steps=4)
    legacy = TrialResult(status="ok", micro_step_s=0.01, optimizer_step_s=0.01)
    m = legacy.measurement(spec)
    assert m is not None and m.exact and m.median == pytest.approx(2 * 10 * 4 / 0.05)
    new = TrialResult(status="ok", micro_step_s=0.01, optimizer_step_s=0.01,
                      throughput=measure([100.0, 110.0, 90.0, 105.0, 95.0]).to_dict())  # fmt: skip
    again = TrialResult.from_dict(new.to_dict()).measurement(spec)
    assert again is not None and again.n == 5 and again.median == 100.0 and again.lo < 100 < again.hi


# -- the worker's stopping rule, with an injected clock ------------------------------------------------------------


def trial(**kw: object) -> object:
    from tuner.trial.worker import Trial

    spec = TrialSpec(arch=TINY, cutoff_len=10, device="cpu", **kw)  # type: ignore[arg-type]
    return Trial(spec, DistEnv(0, 0, 1))


def test_the_trial_stops_once_its_interval_is_within_the_target() -> None:
    t = trial(warmup_steps=1, measure_steps=5, target_rel_ci=0.02, measure_time_s=100.0)
    steps = [3.0] + [1.0 + 0.002 * (i % 3) for i in range(4)]
    assert t._stop_reason(steps, 100.0, 0.0, now=1.0) == ""  # 4 measured: below the minimum
    steps.append(1.001)
    assert t._stop_reason(steps, 100.0, 0.0, now=2.0).startswith("interval within ±2% after 5 steps")


def test_a_noisy_trial_stops_at_its_time_cap_and_every_trial_at_its_step_cap() -> None:
    rng = random.Random(8)
    t = trial(warmup_steps=1, measure_steps=5, target_rel_ci=0.02, measure_time_s=10.0, max_steps=50)
    steps = [3.0] + [math.exp(rng.gauss(0, 0.3)) for _ in range(12)]
    assert t._stop_reason(steps, 100.0, 0.0, now=5.0) == ""
    assert t._stop_reason(steps, 100.0, 0.0, now=10.5) == "time cap (10 s)"
    assert t._stop_reason([1.0, 1.0], 100.0, 0.0, now=99.0) == ""  # one measured step: never stop on time alone
    assert t._stop_reason([1.0] * 50, 100.0, 0.0, now=0.0) == "step cap (50 steps)"
