"""The integer requantizer: int32 accumulator to int8.

Bit-exact reference: ``golden.requant.requantize``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params

from .arith import fits_signed
from .pipeline import StallPipeline, carried

# f is added to the zero point in this many bits: every value outside them clamps to
# act_min/act_max either way, since |zp| <= 128 (see _tail).
_SAT_BITS = 11


def param_layout(*, mode, m_bits, x_bits, **_):
    """Per-channel parameters carried with each accumulator."""
    if mode == "prepost":
        fields = {"multiplier": unsigned(m_bits), "pre": unsigned(5),
                  "post": unsigned((x_bits + m_bits - 1).bit_length())}
    else:
        fields = {"multiplier": signed(32), "shift": signed(6)}
    return data.StructLayout({**fields, "output_zero_point": signed(8),
                              "act_min": signed(8), "act_max": signed(8)})


def input_layout(**params):
    """An accumulator with its channel's parameters (``p``) and, in ``dual`` mode, its
    rounding (``double``: 1 tflite, 0 single)."""
    extra = {"double": 1} if params.get("mode") == "dual" else {}
    return data.StructLayout({"acc": signed(32), "p": param_layout(**params), **extra})


class Requantizer(wiring.Component):
    """Requantize a stream of int32 accumulators, each with its channel's parameters, to int8.

    ``out = clamp(rescale(acc) + output_zero_point, act_min, act_max)`` where ``rescale`` is
    chosen at elaboration by ``mode``:

    - ``tflite``: ``(acc*M + 2**(S-1) + d) >> S``, ``S = 31 - shift``, ``d = +-2**30`` (sign
      of the product) when ``S > 31``: TFLite's double rounding (TOSA DOUBLE_ROUND);
      ``multiplier`` any int32, ``shift`` in [-31, 30].
    - ``single``: the same without ``d`` (TOSA SINGLE_ROUND); ``multiplier`` in [0, 2**31).
    - ``prepost``: ``(sat(acc >> pre, x_bits) * M + 2**(post-1)) >> post``, ``M`` unsigned
      ``m_bits``, ``pre`` in [0, 31], ``post`` in [1, x_bits + m_bits - 1].
    - ``dual``: ``tflite`` or ``single`` for each accumulator, as its ``double`` bit says
      (the tflite pipeline, its nudge added only where ``double`` is set).

    All intermediates are exact (the 32x32 product is built from four 16x16 partial products,
    the shift is a two-level barrel shifter); nothing wraps.

    Latency (``latency``: input transfer to output transfer) 9 cycles in tflite and dual
    mode, 8 in single, 7 in prepost; with ``short=True`` about every other stage has no
    register (the input and output registers stay; ``spec.params.requant_merged`` names
    them): 5, 4, 4 and 5 cycles (``spec.params.requant_latency``), a longer path;
    throughput one result per cycle with no bubbles under continuous valid and ready; the
    whole pipeline stalls while ``o`` is stalled. ``param_error`` is a sticky flag set by
    any accepted beat whose parameters are out of range (``bad_params``; the golden model
    raises there); such a beat's output is unspecified.

    Bit-exact reference: ``golden.requant.requantize`` with the same keyword parameters.
    """

    def __init__(self, *, mode="tflite", m_bits=16, x_bits=18, short=False):
        self._p = spec_params.requant(mode=mode, m_bits=m_bits, x_bits=x_bits, short=short)
        super().__init__({
            "i": In(stream.Signature(input_layout(**self._p))),
            "o": Out(stream.Signature(signed(8))),
            "param_error": Out(1),
        })

    @property
    def params(self):
        return dict(self._p)

    @property
    def latency(self):
        """Cycles from an input transfer to the cycle its result is valid on ``o`` while
        ``o`` is not stalled (then its output transfer): the pipeline's registered stages,
        ``spec.params.requant_latency`` (checked against the pipeline when it is built)."""
        return spec_params.requant_latency(**self._p)

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        stages = spec_params.REQUANT_STAGES[self._p["mode"]]
        pipe = StallPipeline(m, en, spec_params.requant_merged(stages, self._p["short"]))
        acc, p = self.i.payload.acc, self.i.payload.p
        keep = dict(zp=p.output_zero_point, lo=p.act_min, hi=p.act_max)

        if self._p["mode"] == "prepost":
            prod, sm1, keep = self._prepost_product(m, pipe, acc, p, keep)
        else:
            prod, sm1, keep = self._q31_product(m, pipe, acc, p, keep)
        out = self._tail(pipe, prod, sm1, keep)
        assert (pipe.depth, pipe.latency) == (stages, self.latency), (pipe.depth, pipe.latency)

        double = self.i.payload.double if self._p["mode"] == "dual" else None
        with m.If(self.i.valid & self.i.ready & bad_params(p, double=double, **self._p)):
            m.d.sync += self.param_error.eq(1)
        m.d.comb += [self.o.payload.eq(out), self.o.valid.eq(pipe.valid_chain(self.i.valid))]
        return m

    def _q31_product(self, m, pipe, acc, p, keep):
        """acc*M (+ the double-rounding nudge) and the shift S-1, for tflite/single."""
        mode = self._p["mode"]
        shift = p.shift
        s_m1 = Signal(unsigned(6))  # S - 1 = 30 - shift, in [0, 61] for valid shifts
        m.d.comb += s_m1.eq(30 - shift)
        if mode == "dual":  # the accumulator's rounding goes along with it
            keep = dict(keep, double=self.i.payload.double)
        s1 = pipe.stage(a=acc, b=p.multiplier, sm1=s_m1, **keep)
        keep = carried(s1, keep)
        ah, al = s1.a[16:].as_signed(), s1.a[:16]
        bh, bl = s1.b[16:].as_signed(), s1.b[:16]
        # The product is negative exactly when the operands are non-zero and differ in sign
        # (from the registered operands: the accumulator may come from an adder).
        neg = (s1.a != 0) & (s1.b != 0) & (s1.a[31] ^ s1.b[31])
        s2 = pipe.stage(hh=ah * bh, hl=ah * bl, lh=al * bh, ll=al * bl,
                        sm1=s1.sm1, neg=neg, **keep)
        s3 = pipe.stage(hh=s2.hh, ll=s2.ll, mid=s2.hl + s2.lh, sm1=s2.sm1, neg=s2.neg,
                        **carried(s2, keep))
        # hh occupies bits [32, 64) and ll bits [0, 32): concatenate, then add the middle.
        prod = Cat(s3.ll, s3.hh).as_signed() + (s3.mid << 16)
        s4 = pipe.stage(p=prod[:64].as_signed(), sm1=s3.sm1, neg=s3.neg, **carried(s3, keep))
        if mode in ("tflite", "dual"):
            on = (s4.sm1 > 30) & (s4.double if mode == "dual" else 1)
            nudge = Mux(on, Mux(s4.neg, Const(-(1 << 30), signed(32)), 1 << 30), 0)
            s4 = pipe.stage(p=(s4.p + nudge)[:64].as_signed(), sm1=s4.sm1,
                            **carried(s4, keep))
        keep = {k: v for k, v in carried(s4, keep).items() if k != "double"}
        return s4.p, s4.sm1, keep

    def _prepost_product(self, m, pipe, acc, p, keep):
        """sat(acc >> pre) * M and the shift post-1, for prepost."""
        xb = self._p["x_bits"]
        s1 = pipe.stage(a=acc >> p.pre, m=p.multiplier, post=p.post, **keep)
        keep = carried(s1, keep)
        xs = _saturate(s1.a, xb)
        s2 = pipe.stage(x=xs, m=s1.m, sm1=(s1.post - 1)[:len(s1.post)], **keep)
        s3 = pipe.stage(p=s2.x * s2.m, sm1=s2.sm1, **carried(s2, keep))
        return s3.p, s3.sm1, carried(s3, keep)

    def _tail(self, pipe, prod, sm1, keep):
        """Round-shift by sm1+1 (two stages), add the zero point, clamp.

        The rounded value ``f + half`` is only added to the zero point in ``_SAT_BITS`` bits;
        whether ``f`` fits them is decided beside that sum and chosen last: a value that does
        not fit clamps to ``act_min`` or ``act_max`` by its sign whatever the zero point
        (``|f| >= 2**(_SAT_BITS-1)`` and ``|zp| <= 128``), so the wide test is off the
        adders' path (the same result as saturating first)."""
        coarse = Cat(Const(0, 3), sm1[3:])
        s1 = pipe.stage(t=prod >> coarse, sm1=sm1, **keep)
        s2 = pipe.stage(r=s1.t >> s1.sm1[:3], **carried(s1, keep))
        # (p + 2**(s-1)) >> s == (p >> s) + bit s-1 of p; with r = p >> (s-1):
        f, half = s2.r >> 1, s2.r[0]
        s3 = pipe.stage(q=f[:_SAT_BITS].as_signed() + half, big=~fits_signed(f, _SAT_BITS),
                        neg=f[-1], **carried(s2, keep))
        v = s3.q + s3.zp
        near = Mux(v < s3.lo, s3.lo, Mux(v > s3.hi, s3.hi, v))
        out = Mux(s3.big, Mux(s3.neg, s3.lo, s3.hi), near)
        s4 = pipe.stage(out=out[:8].as_signed())
        return s4.out


def bad_params(p, *, mode, m_bits=16, x_bits=18, double=None, **_):
    """Whether the channel parameters ``p`` (the input layout's ``p``, or any record with the
    same fields) are out of the range ``golden.requant.requantize`` accepts in ``mode``,
    given the fields' widths: act_min above act_max; in tflite/single/dual mode a shift of
    -32 or 31 (and a negative multiplier in single mode, or in dual mode where ``double``,
    the accumulator's rounding bit, is 0); in prepost mode a post of 0 or above
    ``x_bits + m_bits - 1``."""
    if mode == "prepost":
        bad = (p.post == 0) | (p.post > x_bits + m_bits - 1)
    else:
        bad = (p.shift == -32) | (p.shift == 31)
        if mode == "single":
            bad |= p.multiplier < 0
        elif mode == "dual":
            bad |= refused_by_rounding(p, double)
    return bad | (p.act_min > p.act_max)


def refused_by_rounding(p, double):
    """The part of ``bad_params`` in dual mode that depends on the REQ: a negative
    multiplier where ``double``, the accumulator's rounding bit, is 0."""
    return (p.multiplier < 0) & ~double


def _saturate(v, bits):
    """Saturate signed ``v`` to signed ``bits``."""
    if len(v) <= bits:
        return v
    lim = Mux(v[-1], Const(-(1 << (bits - 1)), signed(bits)),
              Const((1 << (bits - 1)) - 1, signed(bits)))
    return Mux(fits_signed(v, bits), v[:bits].as_signed(), lim)
