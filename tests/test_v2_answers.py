"""v2_answers.py's arithmetic (issue #30): seed-paired differences with their 95 % t interval, and
the verdict read from the interval, against closed forms worked by hand."""
import math

import pytest

from timeclr.benchmarks.experiments.v2_answers import paired, runs_by, verdict


def rows(variant, values, key="knn_top1_fast"):
    return [{"kind": "run", "variant": variant, "seed": str(s), "knn_top1": "50", key: str(v)} for s, v in enumerate(values)]


def test_differences_are_paired_by_seed_with_the_t_interval():
    # a - b per seed: +10, +20, +30 -> mean 20, sample std 10, half-width t(0.975, 2 df) * 10 / sqrt(3)
    runs = runs_by(rows("a", [60, 70, 80]) + rows("b", [50, 50, 50]) + [{"kind": "summary", "variant": "a", "seed": ""}])
    mean, half, n, d = paired(runs, "knn_top1_fast", "a", "b")
    assert (n, d) == (3, [10.0, 20.0, 30.0]), (n, d)
    assert mean == pytest.approx(20.0) and half == pytest.approx(4.303 * 10 / math.sqrt(3)), (mean, half)


def test_only_the_seeds_both_designs_ran_are_paired():
    runs = runs_by(rows("a", [60, 70, 80]) + rows("b", [50, 40]))  # b lacks seed 2
    assert paired(runs, "knn_top1_fast", "a", "b")[2:] == (2, [10.0, 30.0])
    assert paired(runs, "knn_top1_fast", "a", "c") == (None, None, 0, [])


@pytest.mark.parametrize("mean,half,answer", [(20.0, 5.0, "yes"), (-20.0, 5.0, "no (the reverse)"),
                                              (3.0, 5.0, "no difference measured"), (None, None, "not measured"),
                                              (3.0, float("nan"), "not measured")])
def test_the_verdict_is_read_from_the_interval(mean, half, answer):
    assert verdict(mean, half) == answer
