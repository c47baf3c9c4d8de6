"""Core: the sparq inference core (docs/architecture.md, docs/core.md).

    program --pload--> Sequencer --uop/probe--> datapath --> SparseDotProduct (MultiplierBins)
                                                    |    --> Requantizer --> activation memory
    delta records --> DeltaApply (weights, two banks)
    params --> parameter memory (bias, multiplier, shift, zero point, clamp per channel)

The Sequencer issues what executes; the datapath owns the activation memory (words of
``lanes`` int8), the four accumulators and the parameter memory, and reads the weights from
DeltaApply's active bank. Golden twin: ``golden.core`` (bit-exact; cycle model).

Datapath, uops and probes taken in program order:

- CLR and LDB (the bias, from the parameter memory) wait until the accumulator has no DOT in
  flight, then take one cycle (LDB one more with ``param_ram="sync"``: the block RAM shows
  the channel's parameters the cycle after the uop; so does REQ);
- DOT takes one cycle: it enters the feeder's queue (two DOTs) while the queue has room, and
  the Sequencer goes on. The feeder streams each queued DOT's ``beats`` beats (activation
  and weight words, levels from the weights) into the engine, one per cycle when the engine
  takes them; a DOT's first beat waits until no REQ result in flight writes a word it reads
  (per-word counters; per region of ``hazard_words`` words when that is above 1). Results
  are added to their accumulators when the engine delivers them (a FIFO of accumulator
  numbers);
- REQ waits until the accumulator has no DOT in flight, and while a queued DOT (or the beat
  in the engine's input) reads the word it writes, then sends the accumulator with the
  channel's parameters into the Requantizer (one cycle); the int8 result is written to the
  activation memory when it leaves (a FIFO of addresses);
- SETP's probe waits until the feeder is empty (and, for activation sources, every REQ result
  is written), reads the words it needs and answers with the representative value.

So results are those of executing the program in order (``golden.sequencer``), and the cycle
count is ``golden.core.predict_cycles``'s.

``busy`` stays high until the program has halted and every DOT and REQ has landed. Host
ports work while the core is not busy: ``x_wr`` writes activations, ``x_rd_addr`` /
``x_rd_data`` reads them (one cycle latency), ``param_wr`` writes a channel's parameters,
``records`` go to DeltaApply.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params
from sparq.spec.delta_port import STATUS_BITS
from sparq.spec.isa import Src, UopKind

from .arith import adder_tree, fits_signed, popcount
from .delta_apply import DeltaApply, record_layout
from .requant import Requantizer, bad_params
from .sequencer import WORD, Sequencer
from .sparse_dot import SparseDotProduct

N_ACC = 4
REQ_FIFO_DEPTH = 16  # REQ results' addresses (in block RAM on the iCE40: depth is free)


def param_word_layout():
    return data.StructLayout({"bias": signed(32), "multiplier": signed(32), "shift": signed(6),
                              "output_zero_point": signed(8), "act_min": signed(8),
                              "act_max": signed(8)})


class Core(wiring.Component):
    """The core; ``params`` as ``spec.params.core`` (the machine's and the engine's)."""

    def __init__(self, **params):
        self._p = p = spec_params.core(**params)
        super().__init__({
            "pload": In(stream.Signature(data.StructLayout(
                {"addr": range(p["prog_depth"]), "word": WORD}))),
            "records": In(stream.Signature(record_layout())),
            "param_wr": In(stream.Signature(data.StructLayout(
                {"ch": range(p["channels"]), "p": param_word_layout()}))),
            "x_wr": In(stream.Signature(data.StructLayout(
                {"addr": range(p["x_depth"]), "value": signed(8)}))),
            "x_rd_addr": In(range(p["x_depth"])), "x_rd_data": Out(signed(8)),
            "start": In(1), "busy": Out(1), "halted": Out(1), "error": Out(1),
            "error_pc": Out(range(p["prog_depth"] + 256)),
            "cycles": Out(32), "executed": Out(32), "predicated_off": Out(32),
            "engine_cycles": Out(32), "pairs": Out(32), "skipped": Out(32),
            "weights_active": Out(1), "delta_status": Out(STATUS_BITS), "delta_updates": Out(16),
        })

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        lanes = p["lanes"]
        low = (lanes - 1).bit_length()
        machine = {k: p[k] for k in ("lanes", "x_depth", "w_depth", "channels", "prog_depth",
                                     "x_zero_point", "mode")}
        m.submodules.seq = seq = Sequencer(fetch_ports=p["fetch_ports"], **machine)
        m.submodules.weights = wmem = DeltaApply(depth=p["w_depth"], lanes=lanes)
        m.submodules.engine = eng = SparseDotProduct(
            lanes=lanes, slots=p["slots"], bins=p["bins"], skip=p["skip"])
        m.submodules.req = req = Requantizer(mode="single", short=p["short_requant"])
        # each DOT in flight keeps its accumulator number and its pc (for its error), from
        # its last beat's hand-over to the engine until its result: one in the engine's input
        # register, one in its front end, one in each of its ``latency`` pipeline stages,
        # and one more in the cycle a result leaves as the next DOT is handed over
        pc_bits = (p["prog_depth"] - 1).bit_length()
        m.submodules.dot_fifo = dot_fifo = SyncFIFOBuffered(width=2 + pc_bits,
                                                            depth=eng.latency + 3)
        m.submodules.req_fifo = req_fifo = SyncFIFOBuffered(
            width=(p["x_depth"] - 1).bit_length(), depth=REQ_FIFO_DEPTH)
        # a DOT is pending from its uop (the feeder's queue of two, the beat register) until
        # its result leaves the DOT FIFO: the bound of its counters
        dot_bound = 3 + dot_fifo.depth
        m.submodules.xmem = xmem = Memory(shape=unsigned(8 * lanes),
                                          depth=p["x_depth"] // lanes, init=[])
        x_rd = xmem.read_port()
        x_wr = xmem.write_port(granularity=8) if lanes > 1 else xmem.write_port()
        m.submodules.pmem = pmem = Memory(shape=param_word_layout(), depth=p["channels"],
                                          init=[])
        # asynchronous reads (distributed RAM): LDB and REQ take their parameters in one
        # cycle; synchronous (block RAM): the cycle after the uop shows its channel
        sync_params = p["param_ram"] == "sync"
        p_rd = pmem.read_port() if sync_params else pmem.read_port(domain="comb")
        p_wr = pmem.write_port()

        busy = Signal()
        pending = Signal()
        pend_dot = [Signal(range(dot_bound + 1), name=f"pend_dot{k}") for k in range(N_ACC)]
        pend_req = Signal(range(_req_in_flight(req) + 1))
        m.d.comb += pending.eq(Cat(*[c != 0 for c in pend_dot]).any() | (pend_req != 0))
        m.d.comb += [busy.eq(seq.busy | pending), self.busy.eq(busy | wmem.copying),
                     self.halted.eq(seq.halted & ~pending),
                     self.executed.eq(seq.executed),
                     self.predicated_off.eq(seq.predicated_off),
                     self.engine_cycles.eq(eng.cycles), self.pairs.eq(eng.pairs),
                     self.skipped.eq(eng.skipped), self.weights_active.eq(wmem.active),
                     self.delta_status.eq(wmem.status), self.delta_updates.eq(wmem.updates),
                     eng.x_zero_point.eq(p["x_zero_point"])]
        acc = [Signal(signed(32), name=f"acc{k}") for k in range(N_ACC)]
        with m.If(busy & ~seq.prime):  # (a start's wait for its first word is not counted)
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.Elif(self.start):  # a program starts with cleared accumulators (golden.sequencer)
            m.d.sync += [self.cycles.eq(0)] + [a.eq(0) for a in acc]
        m.d.comb += seq.start.eq(self.start & ~busy & ~wmem.copying)

        # host ports (while not busy)
        wiring.connect(m, wiring.flipped(self.pload), seq.pload)
        m.d.comb += [wmem.records.payload.eq(self.records.payload),
                     wmem.records.valid.eq(self.records.valid & ~busy),
                     self.records.ready.eq(wmem.records.ready & ~busy),
                     p_wr.addr.eq(self.param_wr.payload.ch),
                     p_wr.data.eq(self.param_wr.payload.p),
                     p_wr.en.eq(self.param_wr.valid & ~busy),
                     self.param_wr.ready.eq(~busy)]

        u = seq.uop.payload
        q = seq.probe.payload

        # activation memory writes: requantized results, or the host
        lane_of = lambda a: a[:low] if low else Const(0, 1)  # noqa: E731
        m.d.comb += [req.o.ready.eq(1), req_fifo.r_en.eq(req.o.valid)]
        with m.If(req.o.valid):
            m.d.comb += [x_wr.addr.eq(req_fifo.r_data >> low),
                         x_wr.data.eq(Cat(*[req.o.payload] * lanes)),
                         x_wr.en.eq(Const(1, lanes) << lane_of(req_fifo.r_data))]
        with m.Elif(self.x_wr.valid & ~busy):
            m.d.comb += [x_wr.addr.eq(self.x_wr.payload.addr >> low),
                         x_wr.data.eq(Cat(*[self.x_wr.payload.value] * lanes)),
                         x_wr.en.eq(Const(1, lanes) << lane_of(self.x_wr.payload.addr))]
        m.d.comb += self.x_wr.ready.eq(~busy & ~req.o.valid)
        host_lane = Signal(range(lanes))
        m.d.sync += host_lane.eq(lane_of(self.x_rd_addr))
        m.d.comb += self.x_rd_data.eq(x_rd.data.word_select(host_lane, 8).as_signed())

        # engine results land in their accumulators
        m.d.comb += [eng.o.ready.eq(1), dot_fifo.r_en.eq(eng.o.valid)]
        hit_acc, hit_pc = dot_fifo.r_data[:2], dot_fifo.r_data[2:]
        acc_hit = Signal(signed(33))  # one adder for the four accumulators
        m.d.comb += acc_hit.eq(Cat(*acc).word_select(hit_acc, 32).as_signed() + eng.o.payload)
        for k in range(N_ACC):
            with m.If(eng.o.valid & (hit_acc == k)):
                m.d.sync += acc[k].eq(acc_hit[:32])
        dot_fault = eng.o.valid & ~fits_signed(acc_hit, 32)  # the golden model raises
        req_fault = Signal()  # a REQ taken with parameters out of range (assigned below)
        self._faults(m, seq, dot_fault, hit_pc, req_fault, seq.uop.payload.pc)

        self._datapath(m, seq, u, q, acc, pend_dot, pend_req, x_rd, wmem, p_rd, eng, req,
                       dot_fifo, req_fifo, busy, low, req_fault)
        return m

    def _faults(self, m, seq, dot_fault, dot_pc, req_fault, req_pc):
        """The error contract: where ``golden.sequencer`` raises, ``error`` rises and
        ``error_pc`` names the instruction that raised there, the first in program order.

        The Sequencer reports its own (illegal instructions: it halts before issuing them).
        The datapath's are a DOT whose result takes its accumulator out of int32
        (``dot_fault``, when the engine delivers it) and a REQ taken with parameters the
        Requantizer refuses (``req_fault``); either stops the Sequencer (``abort``: nothing
        more is issued) and the DOTs and REQs in flight drain. The pc is the first in program
        order: instructions issue in order and DOT results come back in order, so a DOT's
        fault (every DOT still in flight was issued before any instruction whose fault was
        already seen) replaces a REQ's or the Sequencer's, and the first DOT fault stays.
        The state the other instructions in flight leave is not specified."""
        p = self._p
        # (the engine's own overflow cannot rise: a DOT's sum is at most 15 beats of
        # ``lanes`` products of at most 255 x 128; its levels come from the weights)
        assert 15 * p["lanes"] * 255 * 128 < 1 << 31
        dp_error, dot_seen = Signal(), Signal()
        dp_pc = Signal(range(p["prog_depth"]))
        m.d.comb += [seq.abort.eq(dp_error), self.error.eq(seq.error | dp_error),
                     self.error_pc.eq(Mux(dp_error, dp_pc, seq.error_pc))]
        with m.If(seq.start):
            m.d.sync += [dp_error.eq(0), dot_seen.eq(0)]
        with m.Elif(dot_fault & ~dot_seen):
            m.d.sync += [dp_error.eq(1), dot_seen.eq(1), dp_pc.eq(dot_pc)]
        with m.Elif(req_fault & ~dp_error & ~seq.error):
            m.d.sync += [dp_error.eq(1), dp_pc.eq(req_pc)]

    def _datapath(self, m, seq, u, q, acc, pend_dot, pend_req, x_rd, wmem, p_rd, eng, req,
                  dot_fifo, req_fifo, busy, low, req_fault):
        p = self._p
        lanes = p["lanes"]
        zp = p["x_zero_point"]
        acc_sel = Signal(signed(32))
        m.d.comb += acc_sel.eq(Cat(*acc).word_select(u.acc, 32).as_signed())
        pend_sel = Signal(len(pend_dot[0]))
        m.d.comb += pend_sel.eq(Cat(*pend_dot).word_select(u.acc, len(pend_dot[0])))

        # the read ports' words as lanes (the feeder's beat, or the probe's)
        x_word = x_rd.data
        w_word = wmem.rd_data
        xs = [x_word[8 * i:8 * i + 8].as_signed() for i in range(lanes)]
        ws = [w_word[i] for i in range(lanes)]

        take_dot = Signal()  # the DOT uop enters the feeder's queue
        req_push = Signal()
        feeder = self._feeder(m, u, take_dot, x_rd, wmem, xs, ws, eng, dot_fifo, req,
                              req_fifo, req_push, low)

        # in-flight bookkeeping: a DOT counts from its uop until the engine delivers it
        for k in range(N_ACC):
            inc = take_dot & (u.acc == k)
            dec = eng.o.valid & (dot_fifo.r_data[:2] == k)  # (then the pc)
            _count(m, pend_dot[k], inc, dec)
        _count(m, pend_req, req_push, req.o.valid)
        m.d.comb += [req_fifo.w_data.eq(u.oaddr), req_fifo.w_en.eq(req_push)]

        m.d.comb += [p_rd.addr.eq(u.ch)]
        params_ok = Signal()  # p_rd.data holds the shown uop's channel
        if p["param_ram"] == "sync":
            shown = Signal()  # the uop shown now was shown (and not taken) in the cycle before
            m.d.sync += shown.eq(seq.uop.valid & ~seq.uop.ready)
            m.d.comb += params_ok.eq(shown)
        else:
            m.d.comb += params_ok.eq(1)

        beat = Signal(4)  # the probe's beat whose words the read ports show this cycle
        value_reg = Signal(signed(16), name="probe_value")
        count = Signal(range(16 * lanes + 1))  # SETP block accumulators
        maxabs = Signal(9)
        # a block probe reduces each beat in two stages: the beat's words to partial terms
        # (``part``, registered), then those into the accumulators (and the value)
        groups = (lanes + 3) // 4
        part = data.StructLayout({"mx": data.ArrayLayout(9, groups),
                                  "nx": data.ArrayLayout(3, groups),
                                  "nw": data.ArrayLayout(3, groups)})
        a = Signal(part, name="probe_part")
        lane = q.addr[:low] if low else Const(0, 1)
        single = (q.src == Src.W) | (q.src == Src.X)

        # a probe's registered words: a single element's value, or a beat's partial terms
        px, pw = Signal(8 * lanes, name="probe_x"), Signal(8 * lanes, name="probe_w")
        p_valid = Signal()
        pxs = [px[8 * i:8 * i + 8].as_signed() for i in range(lanes)]
        pws = [pw[8 * i:8 * i + 8].as_signed() for i in range(lanes)]
        a_valid = Signal()
        with m.If(p_valid):
            m.d.sync += _beat_terms(m, a, pxs, pws, zp) + [a_valid.eq(~single)]
            with m.If(single):
                m.d.sync += value_reg.eq(Mux(q.src == Src.W, pw.word_select(lane, 8),
                                             px.word_select(lane, 8)).as_signed())

        # the block probe's terms of the beat before into the accumulators
        mx = Signal(9)
        m.d.comb += mx.eq(_max_tree(m, [maxabs] + list(a.mx), "probe_max"))
        cnt_x, cnt_w = count + adder_tree(a.nx), count + adder_tree(a.nw)
        with m.If(a_valid):
            m.d.sync += [maxabs.eq(mx), count.eq(Mux(q.src == Src.WNNZ, cnt_w, cnt_x))]

        with m.FSM(name="dp"):
            with m.State("IDLE"):
                # the feeder owns the read ports while it has a DOT; else a probe's first
                # beat, or the host's read
                with m.If(~feeder["busy"]):
                    with m.If(seq.probe.valid):
                        m.d.comb += [x_rd.addr.eq(q.addr >> low),
                                     wmem.rd_addr.eq(q.addr >> low)]
                    with m.Else():
                        m.d.comb += x_rd.addr.eq(self.x_rd_addr >> low)
                with m.If(seq.uop.valid):
                    with m.Switch(u.kind):
                        with m.Case(UopKind.CLR):
                            with m.If(pend_sel == 0):
                                m.d.comb += seq.uop.ready.eq(1)
                                for k in range(N_ACC):
                                    with m.If(u.acc == k):
                                        m.d.sync += acc[k].eq(0)
                        with m.Case(UopKind.LDB):
                            with m.If((pend_sel == 0) & params_ok):
                                m.d.comb += seq.uop.ready.eq(1)
                                for k in range(N_ACC):
                                    with m.If(u.acc == k):
                                        m.d.sync += acc[k].eq(p_rd.data.bias)
                        with m.Case(UopKind.REQ):
                            m.d.comb += [req.i.payload.acc.eq(acc_sel),
                                         req.i.payload.p.multiplier.eq(p_rd.data.multiplier),
                                         req.i.payload.p.shift.eq(p_rd.data.shift),
                                         req.i.payload.p.output_zero_point.eq(
                                             p_rd.data.output_zero_point),
                                         req.i.payload.p.act_min.eq(p_rd.data.act_min),
                                         req.i.payload.p.act_max.eq(p_rd.data.act_max)]
                            with m.If((pend_sel == 0) & req_fifo.w_rdy & ~feeder["reads_out"]
                                      & params_ok):
                                m.d.comb += req.i.valid.eq(1)
                                with m.If(req.i.ready):
                                    m.d.comb += [seq.uop.ready.eq(1), req_push.eq(1),
                                                 req_fault.eq(bad_params(p_rd.data, mode="single"))]
                        with m.Case(UopKind.DOT):
                            with m.If(feeder["room"] & dot_fifo.w_rdy):
                                m.d.comb += [seq.uop.ready.eq(1), take_dot.eq(1)]
                with m.Elif(seq.probe.valid):
                    # (a REQ pending: only probes that read the weights, not the activations)
                    with m.If(~feeder["busy"] & ((pend_req == 0) | (q.src == Src.W)
                                                 | (q.src == Src.WNNZ))):
                        m.d.comb += seq.probe.ready.eq(1)
                        m.d.sync += [beat.eq(0), count.eq(0), maxabs.eq(0)]
                        m.next = "PROBE"

            with m.State("PROBE"):
                # the read ports show beat `beat` of the block at q.addr: its words are
                # registered, and reduced from the registers the cycle after
                last = beat == q.beats - 1
                m.d.comb += [x_rd.addr.eq((q.addr >> low) + beat + 1),
                             wmem.rd_addr.eq((q.addr >> low) + beat + 1)]
                m.d.sync += [px.eq(x_word), pw.eq(w_word.as_value()), p_valid.eq(1),
                             beat.eq(beat + 1)]
                with m.If(single | last):
                    m.next = "DRAIN"

            with m.State("DRAIN"):
                # the last words are reduced now
                m.d.sync += p_valid.eq(0)
                with m.If(single):
                    m.next = "VALUE"
                with m.Else():
                    m.next = "REDUCE"

            with m.State("REDUCE"):
                # the last beat's terms are accumulated now: the value
                m.d.sync += a_valid.eq(0)
                with m.Switch(q.src):
                    with m.Case(Src.XMAXABS):
                        m.d.sync += value_reg.eq(mx)
                    with m.Case(Src.XZERO):
                        m.d.sync += value_reg.eq(cnt_x == 0)
                    with m.Case(Src.XNNZ):
                        m.d.sync += value_reg.eq(cnt_x)
                    with m.Case(Src.WNNZ):
                        m.d.sync += value_reg.eq(cnt_w)
                m.next = "VALUE"

            with m.State("VALUE"):
                m.d.comb += [seq.value.valid.eq(1), seq.value.payload.eq(value_reg)]
                with m.If(seq.value.ready):
                    m.next = "IDLE"

    def _feeder(self, m, u, take_dot, x_rd, wmem, xs, ws, eng, dot_fifo, req, req_fifo,
                req_push, low):
        """The DOT feeder: a queue of two DOTs taken from the uop stream in one cycle each,
        whose beats it streams into the engine (address stage, then the read data in the
        engine's input), so that the Sequencer goes on with other uops meanwhile.

        Hazards, by region of ``hazard_words`` activation words (of ``lanes`` activations):
        a DOT's first beat waits until no REQ result in flight will write a region it reads
        (a counter of pending REQ results per region); a REQ waits while a queued DOT, or
        the beat in the engine's input, reads the region it writes. Returns ``busy`` (a DOT
        queued or a beat in the input), ``room`` (a DOT can be taken) and ``reads_out`` (the
        current REQ must wait).

        Timing (the ECP5 core's critical path was here): the first-beat hazard verdict is a
        flip-flop, computed the cycle before for each DOT that may head the queue next (the
        choice last: it waits for the engine's handshake); the read addresses depend on
        whether the input register moves on, not on the issue decision. Neither changes a
        cycle.
        """
        p = self._p
        lanes = p["lanes"]
        words = p["x_depth"] // lanes
        g = p["hazard_words"]
        regions, rlow = words // g, g.bit_length() - 1
        desc = data.StructLayout({"xw": range(words), "ww": range(p["w_depth"] // lanes),
                                  "beats": 4, "acc": range(N_ACC), "pc": range(p["prog_depth"]),
                                  "reads": regions})  # bit k: the DOT reads region k
        qd = [Signal(desc, name=f"dotq{k}") for k in range(2)]
        qv = [Signal(name=f"dotq{k}_valid") for k in range(2)]  # qv[1] implies qv[0]
        j = Signal(4)  # the next beat of dotq0 to address
        b_valid, b_last = Signal(), Signal()
        b_acc = Signal(range(N_ACC))
        b_pc = Signal(range(p["prog_depth"]))
        b_xw, b_ww = Signal(range(words)), Signal(range(p["w_depth"] // lanes))
        pend_w = [Signal(range(_req_in_flight(req) + 1), name=f"pend_region{k}")
                  for k in range(regions)]

        # per-region pending REQ results; ``kept``: the regions that still have one in
        # flight after this cycle's arrivals (a REQ result written) are counted off
        ow = u.oaddr >> (low + rlow)
        lw = req_fifo.r_data >> (low + rlow)
        kept = Signal(regions)
        for k in range(regions):
            down = req.o.valid & (lw == k)
            _count(m, pend_w[k], req_push & (ow == k), down)
            m.d.comb += kept[k].eq(Mux(down, pend_w[k] > 1, pend_w[k] != 0))

        def waits_next(reads, *, queued=True):
            """A DOT reading ``reads`` meets a REQ result in flight next cycle; a DOT taken
            from the uop stream now (not ``queued``) cannot meet this cycle's REQ, which
            would be the same uop, so its verdict has no term for it (a shorter path)."""
            pushed = req_push & reads.bit_select(ow, 1) if queued else 0
            return (reads & kept).any() | pushed

        raw = Signal()  # a region dotq0 reads has a REQ result in flight (a flip-flop)
        reads_out = Signal()
        m.d.comb += reads_out.eq(((Mux(qv[0], qd[0].reads, 0) | Mux(qv[1], qd[1].reads, 0))
                                  .bit_select(ow, 1)) | (b_valid & ((b_xw >> rlow) == ow)))

        advance = Signal()  # the engine's input register is empty or hands its beat over
        issue = Signal()
        last = Signal()
        pop = Signal()
        m.d.comb += [advance.eq(~b_valid | eng.i.ready),
                     issue.eq(qv[0] & advance & ((j != 0) | ~raw)),
                     last.eq(j == qd[0].beats - 1), pop.eq(issue & last)]
        xw, ww = qd[0].xw + j, qd[0].ww + j
        # the read ports: the next beat's words, or the held beat's again while the input
        # register keeps it. The address does not wait for the issue decision: words read
        # but not issued are not used (the input register empties). While the feeder is
        # idle, the datapath's state machine (assigned later) gives the probe's or the host's
        with m.If(advance):
            m.d.comb += [x_rd.addr.eq(xw), wmem.rd_addr.eq(ww)]
        with m.Else():
            m.d.comb += [x_rd.addr.eq(b_xw), wmem.rd_addr.eq(b_ww)]
        with m.If(issue):
            m.d.sync += [b_valid.eq(1), b_last.eq(last), b_acc.eq(qd[0].acc), b_pc.eq(qd[0].pc),
                         b_xw.eq(xw),
                         b_ww.eq(ww), j.eq(Mux(last, 0, j + 1))]
        with m.Elif(advance):
            m.d.sync += b_valid.eq(0)

        # the queue: push when dotq1 is free; pop when dotq0's last beat is addressed
        new = Signal(desc)
        # the DOT reads words [x0, x0 + beats): region k (words [kg, (k+1)g)) when the two
        # meet. Compares with constants and one short sum (a shifted mask of ones was a
        # carry chain and a barrel shifter on the ECP5 critical path)
        x0 = Signal(len(u.xaddr), name="dot_x0")
        end = Signal(len(u.xaddr) + 1, name="dot_xend")
        m.d.comb += [x0.eq(u.xaddr >> low), end.eq(x0 + u.beats)]
        m.d.comb += [new.xw.eq(x0), new.ww.eq(u.waddr >> low),
                     new.beats.eq(u.beats), new.acc.eq(u.acc), new.pc.eq(u.pc),
                     new.reads.eq(Cat(*[(u.beats != 0) & (x0 < (k + 1) * g) & (end > k * g)
                                        for k in range(regions)]))]
        # ``raw`` follows dotq0: the verdict for each DOT that may be dotq0 next cycle is
        # computed before the late choice (pop waits for the engine's handshake)
        w0, w1 = waits_next(qd[0].reads), waits_next(qd[1].reads)
        wn = waits_next(new.reads, queued=False)
        m.d.sync += raw.eq(w0)
        with m.If(pop):  # (take_dot needs dotq1 free)
            m.d.sync += [qd[0].eq(Mux(qv[1], qd[1], new)), qv[0].eq(qv[1] | take_dot),
                         qv[1].eq(0), raw.eq(Mux(qv[1], w1, wn))]
        with m.Elif(take_dot):
            with m.If(qv[0]):
                m.d.sync += [qd[1].eq(new), qv[1].eq(1)]
            with m.Else():
                m.d.sync += [qd[0].eq(new), qv[0].eq(1), raw.eq(wn)]

        # the engine's input: the beat read in the cycle before (``xs``, ``ws``: its lanes)
        m.d.comb += [eng.i.valid.eq(b_valid), eng.i.payload.last.eq(b_last)]
        for i in range(lanes):
            m.d.comb += [eng.i.payload.w[i].eq(ws[i]), eng.i.payload.x[i].eq(xs[i]),
                         eng.i.payload.lvl[i].eq(_level(ws[i]))]
        m.d.comb += [dot_fifo.w_data.eq(Cat(b_acc, b_pc)),
                     dot_fifo.w_en.eq(b_valid & b_last & eng.i.ready)]
        return dict(busy=qv[0] | b_valid, room=~qv[1], reads_out=reads_out)


def _req_in_flight(req):
    """The most REQ results pending at once, for the counters' widths: the Requantizer
    never stalls (its output is always taken), so ``latency + 1`` (the FIFO's depth is
    never the limit)."""
    return min(req.latency + 1, REQ_FIFO_DEPTH)


def _count(m, counter, up, down):
    """``counter += up - down`` (an in-flight count)."""
    m.d.sync += counter.eq(counter + up - down)


def _level(w):
    """The smallest precision level that holds int8 weight ``w`` (default widths 2, 4, 8)."""
    return Mux(w == 0, 0, Mux((w >= -2) & (w <= 1), 1, Mux((w >= -8) & (w <= 7), 2, 3)))


def _beat_terms(m, part, xs, ws, zp):
    """The assignments of one beat's partial probe terms to ``part``, per group of four
    lanes: the largest ``|x - zp|``, the count of activations other than ``zp`` and of
    non-zero weights."""
    out = []
    for k, g in enumerate(range(0, len(xs), 4)):
        d = [Signal(9, name=f"absdiff{g + i}") for i in range(len(xs[g:g + 4]))]
        for di, xv in zip(d, xs[g:g + 4], strict=True):
            m.d.comb += di.eq(Mux(xv >= zp, xv - zp, zp - xv))
        out += [part.mx[k].eq(_max_tree(m, d, f"lanemax{k}")),
                part.nx[k].eq(popcount(Cat(*[xv != zp for xv in xs[g:g + 4]]))),
                part.nw[k].eq(popcount(Cat(*[wv != 0 for wv in ws[g:g + 4]])))]
    return out


def _max_tree(m, terms, name):
    """The largest of unsigned ``terms`` as a balanced tree of named signals."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms), 2):
            if k + 1 == len(terms):
                nxt.append(terms[k])
                continue
            s = Signal(9, name=f"{name}{level}_{k // 2}")
            m.d.comb += s.eq(Mux(terms[k] > terms[k + 1], terms[k], terms[k + 1]))
            nxt.append(s)
        terms, level = nxt, level + 1
    return terms[0]
