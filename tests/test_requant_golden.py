"""Golden requantizer: against plain Python-int twins of TFLite and TOSA, and its checks."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sparq.golden.qparams import derive_prepost, prepost_error_bound, quantize_multiplier
from sparq.golden.requant import INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier, requantize
from tests import pyint_twin as twin

i32 = st.integers(INT32_MIN, INT32_MAX)
shifts = st.integers(-31, 30)
i8 = st.integers(-128, 127)


@settings(max_examples=3000, deadline=None)
@given(x=i32, m=i32, shift=shifts)
@example(x=INT32_MIN, m=INT32_MIN, shift=0)
@example(x=INT32_MIN, m=INT32_MIN, shift=-1)
@example(x=-3, m=1 << 30, shift=-1)
@example(x=3, m=1 << 30, shift=-1)
def test_double_rounding_matches_tflite(x, m, shift):
    want = twin.mbqm_double(x, m, shift)
    got = int(multiply_by_quantized_multiplier(x, m, shift, mode="tflite"))
    if want is None:  # C's x << left overflows int32 (undefined): exact, then saturated
        exact = twin.tosa_apply_scale_32(x, m, 31 - shift, double_round=True)
        want = max(INT32_MIN, min(INT32_MAX, exact))
    assert got == want


@settings(max_examples=3000, deadline=None)
@given(x=i32, m=st.integers(0, INT32_MAX), shift=shifts)
def test_double_rounding_matches_tosa(x, m, shift):
    want = twin.tosa_apply_scale_32(x, m, 31 - shift, double_round=True)
    if INT32_MIN <= want <= INT32_MAX:  # TOSA REQUIREs an int32 result
        assert int(multiply_by_quantized_multiplier(x, m, shift, mode="tflite")) == want


@settings(max_examples=3000, deadline=None)
@given(x=i32, m=st.integers(0, INT32_MAX), shift=shifts)
def test_single_rounding_matches_tflite_and_tosa(x, m, shift):
    want = twin.mbqm_single(x, m, shift)
    assert want == twin.tosa_apply_scale_32(x, m, 31 - shift, double_round=False)
    if INT32_MIN <= want <= INT32_MAX:
        assert int(multiply_by_quantized_multiplier(x, m, shift, mode="single")) == want


@settings(max_examples=2000, deadline=None)
@given(x=i32, m=i32, shift=shifts, zp=i8, a=i8, b=i8, mode=st.sampled_from(["tflite", "single"]))
def test_requantize_q31_matches_twin(x, m, shift, zp, a, b, mode):
    lo, hi = min(a, b), max(a, b)
    if mode == "single":
        m = abs(m) if m != INT32_MIN else INT32_MAX
        r = twin.mbqm_single(x, m, shift)
    else:
        r = twin.mbqm_double(x, m, shift)
        if r is None:  # C overflow: the golden value is the exact one, clamped
            r = twin.tosa_apply_scale_32(x, m, 31 - shift, double_round=True)
    got = requantize(x, multiplier=m, shift=shift, output_zero_point=zp, act_min=lo,
                     act_max=hi, mode=mode)
    assert int(got) == twin.finish(r, zp, lo, hi)


@settings(max_examples=3000, deadline=None)
@given(x=i32, zp=i8, data=st.data(),
       widths=st.sampled_from([(16, 18), (8, 12), (2, 2), (31, 32), (12, 24)]))
def test_requantize_prepost_matches_twin(x, zp, data, widths):
    m_bits, x_bits = widths
    m = data.draw(st.integers(0, (1 << m_bits) - 1))
    pre = data.draw(st.integers(0, 31))
    post = data.draw(st.integers(1, x_bits + m_bits - 1))
    got = requantize(x, multiplier=m, pre=pre, post=post, output_zero_point=zp,
                     mode="prepost", m_bits=m_bits, x_bits=x_bits)
    assert int(got) == twin.finish(twin.prepost(x, m, pre, post, x_bits), zp, -128, 127)


def test_requantize_is_vectorised_per_channel():
    acc = np.array([[100, -100, 7], [2**31 - 1, -(2**31), 0]])
    got = requantize(acc, multiplier=np.array([1 << 30, 1 << 30, 1 << 30]),
                     shift=np.array([0, -1, 1]), output_zero_point=3)
    assert got.dtype == np.int8
    assert got.tolist() == [[53, -22, 10], [127, -128, 3]]


@pytest.mark.parametrize("kw, name", [
    (dict(multiplier=1 << 30, shift=31), "shift"),
    (dict(multiplier=1 << 30, shift=-32), "shift"),
    (dict(multiplier=-1, shift=0, mode="single"), "multiplier"),
    (dict(multiplier=2**31, shift=0), "multiplier"),
    (dict(multiplier=1, shift=0, output_zero_point=128), "output_zero_point"),
    (dict(multiplier=1, shift=0, act_min=5, act_max=4), "act_min"),
    (dict(multiplier=1 << 16, pre=0, post=0, mode="prepost"), "multiplier"),
    (dict(multiplier=1, pre=0, post=0, mode="prepost"), "post"),
    (dict(multiplier=1, pre=32, post=1, mode="prepost"), "pre"),
    (dict(multiplier=1, mode="fast"), "mode"),
    (dict(multiplier=1, mode="prepost", m_bits=1), "m_bits"),
])
def test_requantize_rejects_out_of_range(kw, name):
    with pytest.raises(ValueError, match=name):
        requantize(np.array([1, 2]), **kw)


def test_requantize_rejects_out_of_range_accumulator_and_floats():
    with pytest.raises(ValueError, match="acc .* 2147483648"):
        requantize(np.array([2**31]), multiplier=1)
    with pytest.raises(TypeError, match="acc"):
        requantize(np.array([0.5]), multiplier=1)


@settings(max_examples=2000, deadline=None)
@given(scale=st.floats(2.0**-40, 2.0**29, allow_nan=False))
@example(scale=1.0)
@example(scale=0.5)
@example(scale=1 - 2**-40)  # the fraction rounds up to 2**31
def test_quantize_multiplier(scale):
    m, shift = quantize_multiplier(scale)
    if scale < 2.0**-32:
        assert (m, shift) == (0, 0) or 2**30 <= m < 2**31
        return
    assert 2**30 <= m < 2**31 and -31 <= shift <= 30
    assert abs(m * 2.0 ** (shift - 31) - scale) <= scale * 2.0**-31


def test_quantize_multiplier_rejects():
    for bad in (-1.0, float("nan"), float("inf"), 2.0**31):
        with pytest.raises(ValueError, match="scale"):
            quantize_multiplier(bad)
    assert quantize_multiplier(0.0) == (0, 0)


@settings(max_examples=300, deadline=None)
@given(scale=st.floats(2.0**-20, 0.25), bound_bits=st.integers(8, 31),
       widths=st.sampled_from([(16, 18), (12, 16), (8, 12), (16, 24)]), data=st.data())
def test_prepost_error_bound_holds(scale, bound_bits, widths, data):
    m_bits, x_bits = widths
    acc_bound = (1 << bound_bits) - 1
    try:
        m, pre, post = derive_prepost(scale, acc_bound=acc_bound, m_bits=m_bits, x_bits=x_bits)
    except ValueError:  # only when even post = 1 needs a wider M
        pre = max(0, bound_bits - (x_bits - 1))
        assert math.floor(scale * 2.0 ** (pre + 1) + 0.5) >= 1 << m_bits
        return
    bound = prepost_error_bound(scale, m, pre, post, acc_bound=acc_bound)
    xs = np.array(data.draw(st.lists(st.integers(-acc_bound, acc_bound), min_size=1,
                                     max_size=50)) + [acc_bound, -acc_bound, 0])
    r = (np.clip(xs >> pre, -(1 << (x_bits - 1)), (1 << (x_bits - 1)) - 1) * m
         + (1 << (post - 1))) >> post
    err = np.abs(r - xs * scale)
    assert np.all(err <= bound + 1e-9), (err.max(), bound)
    # and through the full requantizer, against exactly rounded x*scale, in int8 steps
    out = requantize(xs, multiplier=m, pre=pre, post=post, mode="prepost", m_bits=m_bits,
                     x_bits=x_bits).astype(np.int64)
    exact = np.clip(np.floor(xs * scale + 0.5), -128, 127)
    assert np.all(np.abs(out - exact) <= math.floor(bound + 0.5))


def test_prepost_default_bound_on_a_realistic_layer():
    """A digits-sized layer (|acc| <= 64*255*127 < 2**21, scale ~ s_in*s_w/s_out): within one
    step of exact rounding with the default 16-bit M and 18-bit multiplier input."""
    m, pre, post = derive_prepost(0.0016, acc_bound=2**21)
    bound = prepost_error_bound(0.0016, m, pre, post, acc_bound=2**21)
    assert pre == 5 and 2**15 <= m < 2**16 and bound < 0.56


def test_derive_prepost_rejects():
    with pytest.raises(ValueError, match="multiplier wider"):
        derive_prepost(2.0**20, m_bits=8, x_bits=8, acc_bound=100)
    with pytest.raises(ValueError, match="acc_bound"):
        derive_prepost(0.1, acc_bound=0)
