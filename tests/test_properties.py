"""Property-based tests (hypothesis): the sinusoid sampler and the input checks, on many inputs."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit import SinusoidFamily
from mlkit.checks import check_choice, check_float, check_int, check_range

fast = settings(max_examples=50, deadline=None)  # the whole file runs in a few seconds

# magnitudes a learner might type; values beyond float32's range are reported separately
reals = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
counts = st.integers(1, 12)


def pair(elements):
    return st.tuples(elements, elements).map(sorted).map(tuple)


def not_int():
    return st.one_of(st.floats(allow_nan=True), st.booleans(), st.text(max_size=3), st.none(),
                     st.lists(st.integers(), max_size=2))


def not_real():
    return st.one_of(st.booleans(), st.text(max_size=3), st.none(), st.complex_numbers(),
                     st.sampled_from([math.nan, math.inf, -math.inf]))


def within(values, low, high):
    tol = 1e-5 * max(1.0, abs(low), abs(high))  # the sampler draws in float32
    return bool(((values >= low - tol) & (values <= high + tol)).all())


# ----------------------------------------------------------------------------- SinusoidFamily
@fast
@given(amplitude=pair(st.floats(0, 1e4)), phase=pair(reals), x_range=pair(reals),
       tasks=counts, shots=counts, queries=counts, seed=st.integers(0, 2**31))
def test_sinusoid_samples_have_the_right_shapes_and_stay_in_range(amplitude, phase, x_range,
                                                                  tasks, shots, queries, seed):
    family = SinusoidFamily(amplitude, phase, x_range)
    b = family.sample(tasks, shots, queries, generator=torch.Generator().manual_seed(seed))
    assert b.x_support.shape == b.y_support.shape == (tasks, shots, 1)
    assert b.x_query.shape == b.y_query.shape == (tasks, queries, 1)
    assert b.info["amplitude"].shape == b.info["phase"].shape == (tasks,)
    amp = b.info["amplitude"]
    assert within(amp, *amplitude) and within(b.info["phase"], *phase)
    assert within(b.x_support, *x_range) and within(b.x_query, *x_range)
    for x, y in ((b.x_support, b.y_support), (b.x_query, b.y_query)):
        assert torch.isfinite(y).all()
        assert (y.abs() <= amp.view(-1, 1, 1) * (1 + 1e-5) + 1e-6).all()  # |A sin(.)| <= A
        assert torch.equal(y, SinusoidFamily.curve(amp, b.info["phase"], x))
    again = family.sample(tasks, shots, queries, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(again.y_query, b.y_query)


@fast
@given(name=st.sampled_from(["amplitude", "phase", "x_range"]),
       lo=st.floats(0, 1e4), gap=st.floats(1e-3, 1e4))
def test_sinusoid_range_with_low_above_high_names_the_parameter(name, lo, gap):
    with pytest.raises(ValueError, match=f"^{name} must have low <= high"):
        SinusoidFamily(**{name: (lo + gap, lo)})


@fast
@given(name=st.sampled_from(["amplitude", "phase", "x_range"]),
       bad=st.one_of(not_real(), st.floats(-1e4, 1e4).map(lambda v: (v,)),
                     st.tuples(reals, reals, reals), st.sampled_from([(math.nan, 1.0),
                                                                     (0.0, math.inf)])))
def test_sinusoid_bad_range_names_the_parameter(name, bad):
    with pytest.raises(ValueError, match=f"^{name}"):
        SinusoidFamily(**{name: bad})


@fast
@given(low=st.floats(-1e4, -1e-6), high=st.floats(0, 1e4))
def test_sinusoid_negative_amplitude_is_refused(low, high):
    with pytest.raises(ValueError, match=r"^amplitude\[0\] must be a finite number in \[0, "):
        SinusoidFamily(amplitude=(low, high))


@fast
@given(name=st.sampled_from(["tasks", "shots", "queries"]),
       bad=st.one_of(st.integers(-10**6, 0), not_int()))
def test_sinusoid_bad_counts_name_the_parameter_and_value(name, bad):
    kwargs = {"tasks": 2, "shots": 3, "queries": 4, name: bad}
    with pytest.raises(ValueError) as e:
        SinusoidFamily().sample(**kwargs)
    assert str(e.value).startswith(f"{name} must be an integer >= 1, got ")
    assert repr(bad) in str(e.value)


# ----------------------------------------------------------------------------- mlkit.checks
bounds = st.one_of(st.none(), st.integers(-100, 100))


@fast
@given(low=bounds, high=bounds, data=st.data())
def test_check_int_accepts_exactly_the_ints_within_bounds(low, high, data):
    value = data.draw(st.integers(-200, 200))
    ok = (low is None or value >= low) and (high is None or value <= high)
    if ok:
        assert check_int("n", value, low, high) == value
    else:
        with pytest.raises(ValueError) as e:
            check_int("n", value, low, high)
        message = str(e.value)
        assert message.startswith("n must be an integer") and message.endswith(f"got {value!r}")
        for bound, word in ((low, ">="), (high, "<=")):
            if bound is not None and (low is None or high is None):
                assert f"{word} {bound}" in message
        if low is not None and high is not None:
            assert f"in [{low}, {high}]" in message


@fast
@given(bad=not_int())
def test_check_int_rejects_non_integers(bad):
    with pytest.raises(ValueError, match=r"^ways must be an integer, got ") as e:
        check_int("ways", bad)
    assert repr(bad) in str(e.value)


@fast
@given(low=st.one_of(st.none(), reals), high=st.one_of(st.none(), reals), inclusive=st.booleans(),
       value=st.one_of(reals, st.integers(-10**4, 10**4)))
def test_check_float_accepts_exactly_the_finite_numbers_within_bounds(low, high, inclusive, value):
    ok = ((low is None or (value >= low if inclusive else value > low))
          and (high is None or value <= high))
    if ok:
        out = check_float("inner_lr", value, low, high, low_inclusive=inclusive)
        assert out == value and type(out) is float
    else:
        with pytest.raises(ValueError) as e:
            check_float("inner_lr", value, low, high, low_inclusive=inclusive)
        assert str(e.value).startswith("inner_lr must be a finite number")
        assert str(e.value).endswith(f"got {float(value)!r}")


@fast
@given(bad=not_real())
def test_check_float_rejects_non_numbers_and_non_finite(bad):
    with pytest.raises(ValueError, match=r"^outer_lr must be a finite number > 0, got ") as e:
        check_float("outer_lr", bad, low=0, low_inclusive=False)
    assert repr(bad) in str(e.value)


@fast
@given(lo=reals, hi=reals, low=st.one_of(st.none(), reals), high=st.one_of(st.none(), reals))
def test_check_range(lo, hi, low, high):
    ok = lo <= hi and all((low is None or v >= low) and (high is None or v <= high) for v in (lo, hi))
    if ok:
        assert check_range("phase", (lo, hi), low, high) == (lo, hi)
        assert check_range("phase", [lo, hi], low, high) == (lo, hi)
    else:
        with pytest.raises(ValueError, match=r"^phase(\[0\]|\[1\])? must ") as e:
            check_range("phase", (lo, hi), low, high)
        message = str(e.value)
        if "low <= high" in message:
            assert f"got ({lo:g}, {hi:g})" in message
        else:
            bad = lo if message.startswith("phase[0]") else hi
            assert message.endswith(f"got {bad!r}")


@fast
@given(bad=st.one_of(st.none(), reals, st.tuples(reals), st.tuples(reals, reals, reals),
                     st.lists(reals, min_size=3, max_size=4)))
def test_check_range_rejects_what_is_not_a_pair(bad):
    with pytest.raises(ValueError, match=r"^x_range must be a pair \(low, high\), got ") as e:
        check_range("x_range", bad)
    assert repr(bad) in str(e.value)


choices = st.lists(st.one_of(st.text(max_size=4), st.integers(-5, 5)), min_size=1, max_size=5,
                   unique=True)


@fast
@given(options=choices, data=st.data())
def test_check_choice(options, data):
    value = data.draw(st.sampled_from(options))
    assert check_choice("algo", value, options) == value
    other = data.draw(st.one_of(st.text(max_size=4), st.integers(-10, 10), st.none())
                      .filter(lambda v: v not in options))
    with pytest.raises(ValueError) as e:
        check_choice("algo", other, options)
    message = str(e.value)
    assert message.startswith("algo must be one of ") and message.endswith(f"got {other!r}")
    assert all(repr(o) in message for o in options)
