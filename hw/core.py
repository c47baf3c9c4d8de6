"""Core: the sparq inference core (docs/architecture.md, docs/core.md).

    pload --> Sequencer --uop--> (execute) --dot--> DotFeeder --o--> SparseDotProduct
                 |  ^                |                  |tag             |o
                 |  |                |                  v                v
                 |  |                |            AccumulatorFile <------'
                 |  |                '--i--> RequantWriteback --wr--> ActivationMemory
                 '--probe--> ProbeUnit --value--'
    records --> DeltaApply (weights, two banks);  param_wr --> parameter memory

Each part is a component of its own module, joined here with ``wiring.connect``:

- ``Sequencer`` (``hw.sequencer``): fetch, predicates, loops; issues uops and probes;
- ``DotFeeder`` (``hw.dot_feeder``): a queue of two DOTs whose beats (activation and weight
  words, levels from the weights) it streams into the engine, one per cycle when the engine
  takes them, and the hazards against REQ results in flight (per word, or per region of
  ``hazard_words`` words);
- ``SparseDotProduct`` (``hw.sparse_dot``): the engine;
- ``AccumulatorFile`` (``hw.accumulators``): four int32 accumulators, the DOTs pending on
  each and the results' accumulator numbers (a FIFO of tags);
- ``RequantWriteback`` (``hw.writeback``): the Requantizer and the addresses its results
  are written to;
- ``ProbeUnit`` (``hw.probe_unit``): SETP's representative values;
- ``ActivationMemory`` (``hw.activation_memory``): words of ``lanes`` int8;
- ``DeltaApply`` (``hw.delta_apply``): the weights, and the parameter memory here.

The uops are executed here (``Core._execute``), in program order:

- CLR and LDB (the bias, from the parameter memory) wait until the accumulator has no DOT in
  flight, then take one cycle (LDB one more with ``param_ram="sync"``: the block RAM shows
  the channel's parameters the cycle after the uop; so does REQ);
- DOT takes one cycle: it enters the feeder's queue while the queue has room, and the
  Sequencer goes on. A DOT's first beat waits until no REQ result in flight writes a word
  it reads; results are added to their accumulators when the engine delivers them;
- REQ waits until the accumulator has no DOT in flight, and while a queued DOT (or the beat
  in the engine's input) reads the word it writes, then enters the writeback (one cycle);
  the int8 result is written to the activation memory when it leaves;
- SETP's probe waits until the feeder is empty (and, for activation sources, every REQ result
  is written), reads the words it needs and answers with the representative value.

So results are those of executing the program in order (``golden.sequencer``), and the cycle
count is ``golden.core.predict_cycles``'s. Golden twin: ``golden.core``.

``busy`` stays high until the program has halted and every DOT and REQ has landed. Host
ports work while the core is not busy: ``x_wr`` writes activations, ``x_rd_addr`` /
``x_rd_data`` reads them (one cycle latency), ``param_wr`` writes a channel's parameters,
``records`` go to DeltaApply. (A convolution core's ``busy`` stays high a cycle after
the run: its start and its host writes wait for a cycle of it idle.)
"""

from amaranth.hdl import Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params
from sparq.spec.delta_port import STATUS_BITS
from sparq.spec.isa import N_ACC, N_BANKS

from .accumulators import AccumulatorFile
from .activation_memory import ActivationMemory
from .delta_apply import DeltaApply, record_layout
from .dot_feeder import DotFeeder
from .encodings import UopKind
from .probe_unit import ProbeUnit
from .seq_decode import BODY_SPAN
from .sequencer import WORD, Sequencer
from .sparse_dot import SparseDotProduct
from .uop_skid import UopSkid
from .writeback import RequantWriteback, param_word_layout, stored_param, stored_param_layout


class Core(wiring.Component):
    """The core; ``params`` as ``spec.params.core`` (the machine's and the engine's).

    ==================== ===== ====================================================
    ``pload``            In    stream: program word ``word`` to address ``addr``
    ``records``          In    stream of delta records, to DeltaApply (while idle, not
                               in the cycle a program starts)
    ``param_wr``         In    stream: channel ``ch``'s parameters ``p`` (while idle)
    ``x_wr``             In    stream: activation ``value`` to ``addr`` (while idle)
    ``x_rd_addr``        In    activation to read; ``x_rd_data`` shows it a cycle later
    ``start``            In    run the program from word 0 (while idle)
    ``busy``             Out   running, or DOTs/REQs in flight, or a delta copy
    ``halted``           Out   the program halted and everything landed
    ``error``            Out   sticky until the next start: where ``golden.sequencer``
                               raises; ``error_pc`` names the instruction
    ``cycles``           Out   cycles of the last run (``golden.core.predict_cycles``)
    ``executed``         Out   instructions executed / ``predicated_off`` skipped
    ``engine_cycles``    Out   the engine's busy cycles, ``pairs`` it saw, ``skipped``
    ``weights_active``   Out   DeltaApply's active bank, ``delta_status``,
                               ``delta_updates``
    ==================== ===== ====================================================

    Parts (each a component, joined with ``wiring.connect``): ``seq`` (Sequencer),
    ``feeder`` (DotFeeder: the DOT queue and its hazards), ``engine`` (SparseDotProduct),
    ``accs`` (AccumulatorFile), ``writeback`` (RequantWriteback: the REQ path), ``probe``
    (ProbeUnit: SETP's values), ``xmem`` (ActivationMemory), ``weights`` (DeltaApply) and
    the parameter memory. The uops are executed here (``_execute``).
    """

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
            "error_pc": Out(range(p["prog_depth"] + BODY_SPAN)),
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
        machine = {k: p[k] for k in ("lanes", "x_depth", "w_depth", "channels", "prog_depth",
                                     "x_zero_point", "mode", "conv")}
        conv = p["conv"]
        m.submodules.seq = seq = Sequencer(fetch_ports=p["fetch_ports"], **machine)
        uop, skid = seq.uop, None
        if conv:  # (the datapath's take reaches a register, not the program's address)
            m.submodules.uop_skid = skid = UopSkid(seq.uop.payload.shape())
            wiring.connect(m, seq.uop, skid.i)
            m.d.comb += [seq.hold.eq(skid.held), skid.flush.eq(seq.abort),
                         skid.clear.eq(seq.start)]
            uop = skid.o
        nz = p["stored_nz"]  # (each weight's non-zero bit stored beside it: spec.params.core)
        m.submodules.weights = wmem = DeltaApply(depth=p["w_depth"], lanes=p["lanes"],
                                                 nz_bits=nz)
        m.submodules.engine = eng = SparseDotProduct(
            lanes=p["lanes"], slots=p["slots"], bins=p["bins"], skip=p["skip"],
            check_levels=False,  # (the feeder's levels are the weights' own: dot_feeder.level)
            push=True,  # (the AccumulatorFile takes every result: i.ready a flip-flop)
            stored_nz=nz,
            **({"banks": True} if conv else {}))
        wb_conv = dict(conv=True, lanes=p["lanes"], channels=p["channels"],
                       prog_depth=p["prog_depth"], param_ram=p["param_ram"]) if conv else {}
        m.submodules.writeback = wb = RequantWriteback(x_depth=p["x_depth"],
                                                       short=p["short_requant"], **wb_conv)
        m.submodules.feeder = feeder = DotFeeder(
            lanes=p["lanes"], x_depth=p["x_depth"], w_depth=p["w_depth"],
            prog_depth=p["prog_depth"], hazard_words=p["hazard_words"],
            writes_in_flight=wb.in_flight, stored_nz=nz,
            **({"conv": True, "window_wait": spec_params.WINDOW_WAIT} if conv else {}))
        # each DOT between its last beat and its result: one in the engine's input register,
        # one in its front end, one in each of its ``latency`` pipeline stages, and one more
        # in the cycle a result leaves as the next DOT is handed over
        m.submodules.accs = accs = AccumulatorFile(
            prog_depth=p["prog_depth"], tags=eng.latency + 3,
            **({"banks": N_BANKS, "lanes": p["lanes"]} if conv else {}))
        # a probe whose value the Sequencer will not take (it was stopped by a datapath error
        # while a SETP waited) is abandoned: the unit is reset while the error stands
        probe = ProbeUnit(lanes=p["lanes"])
        m.submodules.probe = ResetInserter(seq.abort)(probe)
        m.submodules.xmem = xmem = ActivationMemory(lanes=p["lanes"], x_depth=p["x_depth"])
        wiring.connect(m, feeder.o, eng.i)
        wiring.connect(m, feeder.tag, accs.tag)
        wiring.connect(m, eng.o, accs.result)
        wiring.connect(m, seq.probe, probe.probe)
        wiring.connect(m, probe.value, seq.value)
        wiring.connect(m, wiring.flipped(self.pload), seq.pload)
        if conv:  # the lane banks: the engine's steps in, the writeback's read-out
            wiring.connect(m, eng.bank_add, accs.bank_add)
            m.d.comb += [accs.bank_rd_sel.eq(wb.bank_rd_sel),
                         accs.bank_rd_lane.eq(wb.bank_rd_lane),
                         wb.bank_rd_value.eq(accs.bank_rd_value),
                         wb.bank_rd_first.eq(accs.bank_rd_first),
                         feeder.bank_busy_next.eq(wb.bank_busy_next)]
        # (a REQW's word counts as written when its last lane is)
        landed = wb.wr_en & wb.wr_last if conv else wb.wr_en
        m.d.comb += [eng.x_zero_point.eq(feeder.zp),
                     feeder.wr_issue.eq(wb.i.valid & wb.i.ready),
                     feeder.wr_land.eq(landed), feeder.wr_land_addr.eq(wb.wr_addr),
                     probe.blocked.eq(feeder.busy), probe.x_writes.eq(wb.pending),
                     feeder.x_data.eq(xmem.rd_data), feeder.w_data.eq(wmem.rd_data),
                     *([feeder.w_nz.eq(wmem.rd_nz)] if nz else []),
                     probe.x_data.eq(xmem.rd_data), probe.w_data.eq(wmem.rd_data)]
        closed = self._status(m, seq, skid, accs, wb, eng, wmem)
        self._memories(m, closed, seq.start, feeder, probe, xmem, wmem, wb)
        p_rd = self._param_memory(m, closed, wb)
        self._execute(m, uop, feeder, accs, wb, p_rd)
        if conv:
            self._ordered_faults(m, seq, uop, accs, wb, feeder)
        else:
            self._faults(m, seq, accs.fault, accs.fault_pc, wb.fault, uop.payload.pc)
        return m

    def _status(self, m, seq, skid, accs, wb, eng, wmem):
        """``busy`` (running or anything in flight), ``halted``, the counters, and a start
        (which clears the accumulators and ``cycles``). Returns whether the host's write
        ports are closed: while busy; with the skid buffer (a convolution core), as its
        start, until a cycle after the core went idle (``idle_before``, and the Sequencer's
        ``busy``: registers, so no datapath state reaches the ports' handshakes)."""
        busy, pending = Signal(), Signal()
        # (a uop in the skid buffer is pending; one it dropped was counted, never ran)
        m.d.comb += [pending.eq(accs.pending | wb.pending | (skid.held if skid else 0)),
                     busy.eq(seq.busy | pending),
                     self.halted.eq(seq.halted & ~pending),
                     self.executed.eq(seq.executed - (skid.dropped if skid else 0)),
                     self.predicated_off.eq(seq.predicated_off),
                     self.engine_cycles.eq(eng.cycles), self.pairs.eq(eng.pairs),
                     self.skipped.eq(eng.skipped), self.weights_active.eq(wmem.active),
                     self.delta_status.eq(wmem.status), self.delta_updates.eq(wmem.updates)]
        if skid is None:
            m.d.comb += [self.busy.eq(busy | wmem.copying),
                         seq.start.eq(self.start & ~busy & ~wmem.copying)]
        else:  # a start waits for a cycle of the core idle, a register: with the Sequencer
            # not running nothing becomes pending, so no datapath state reaches its start
            idle = Signal(init=1, name="idle_before")
            m.d.sync += idle.eq(~busy)
            m.d.comb += [self.busy.eq(busy | wmem.copying | ~idle),
                         seq.start.eq(self.start & idle & ~seq.busy & ~wmem.copying)]
            # (idle in the cycle before and not started then: nothing is in flight now)
            closed = Signal(name="host_closed")
            m.d.comb += closed.eq(~idle | seq.busy)
        with m.If(busy & ~seq.prime):  # (a start's wait for its first word is not counted)
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.Elif(seq.start):  # a program starts with cleared accumulators (golden.sequencer)
            m.d.sync += self.cycles.eq(0)
            m.d.comb += accs.clear.eq(1)
        return busy if skid is None else closed

    def _memories(self, m, closed, starting, feeder, probe, xmem, wmem, wb):
        """The read ports: the feeder's while it has a DOT, else a probe's, else the host's;
        the activation writes: REQ results, else the host's (while not ``closed``: idle);
        the host's delta records (likewise, and not in the cycle a program starts: a BEGIN's
        bank copy would take the weights' read port from the program)."""
        low = (self._p["lanes"] - 1).bit_length()
        m.d.comb += [
            xmem.rd_addr.eq(Mux(feeder.busy, feeder.x_addr,
                                Mux(probe.reading, probe.rd_addr, self.x_rd_addr >> low))),
            # (the feeder's words are used only while it is busy: a probe's address otherwise,
            # reading or not, so that the probe's late handshake does not choose the address)
            wmem.rd_addr.eq(Mux(~feeder.busy, probe.rd_addr, feeder.w_addr)),
            xmem.rd_lane.eq(self.x_rd_addr), self.x_rd_data.eq(xmem.rd_elem)]
        with m.If(wb.wr_en):
            m.d.comb += [xmem.wr_en.eq(1), xmem.wr_addr.eq(wb.wr_addr),
                         xmem.wr_value.eq(wb.wr_value)]
        with m.Else():
            m.d.comb += [xmem.wr_en.eq(self.x_wr.valid & ~closed),
                         xmem.wr_addr.eq(self.x_wr.payload.addr),
                         xmem.wr_value.eq(self.x_wr.payload.value)]
        m.d.comb += [self.x_wr.ready.eq(~closed & ~wb.wr_en),
                     wmem.records.payload.eq(self.records.payload),
                     wmem.records.valid.eq(self.records.valid & ~closed & ~starting),
                     self.records.ready.eq(wmem.records.ready & ~closed & ~starting)]

    def _param_memory(self, m, closed, wb):
        """The channels' parameters, written by the host while idle. Read asynchronously
        (distributed RAM: LDB and REQ take them in one cycle) or synchronously (block RAM:
        the cycle after the uop shows its channel). Returns the read port; with the
        convolution extensions the writeback has a port of its own (its REQWs read a
        channel a cycle while LDBs go on), and the returned one serves LDB."""
        conv = self._p["conv"]  # (every core's words carry the checks made when written)
        m.submodules.pmem = pmem = Memory(
            shape=stored_param_layout(),
            depth=self._p["channels"], init=[])
        sync = self._p["param_ram"] == "sync"
        p_rd = pmem.read_port() if sync else pmem.read_port(domain="comb")
        if self._p["conv"]:
            wb_rd = pmem.read_port() if sync else pmem.read_port(domain="comb")
            m.d.comb += [wb_rd.addr.eq(wb.p_addr), wb.p_data.eq(wb_rd.data)]
        p_wr = pmem.write_port()
        m.d.comb += [p_wr.addr.eq(self.param_wr.payload.ch),
                     p_wr.data.eq(stored_param(self.param_wr.payload.p,
                                               mode="dual" if conv else "single")),
                     p_wr.en.eq(self.param_wr.valid & ~closed),
                     self.param_wr.ready.eq(~closed)]
        return p_rd

    def _execute(self, m, uop, feeder, accs, wb, p_rd):
        """The uops, in order: CLR and LDB (the bias) wait until the accumulator has no DOT
        in flight and take a cycle; REQ waits for that and for the feeder's hazard
        (``wr_blocked``), then enters the writeback; DOT enters the feeder's queue while it
        and the accumulators' tag FIFO have room. With ``param_ram="sync"``, LDB and REQ
        wait a cycle more for their channel's parameters."""
        u = uop.payload
        params_ok = Signal()  # p_rd.data holds the shown uop's channel
        if self._p["param_ram"] == "sync":
            shown = Signal()  # the uop shown now was shown (and not taken) in the cycle before
            m.d.sync += shown.eq(uop.valid & ~uop.ready)
            m.d.comb += params_ok.eq(shown)
        else:
            m.d.comb += params_ok.eq(1)
        d, r = feeder.dot.payload, wb.i.payload
        taken = feeder.dot.valid & feeder.dot.ready
        m.d.comb += [p_rd.addr.eq(u.ch), accs.sel.eq(u.acc),
                     d.xaddr.eq(u.xaddr), d.waddr.eq(u.waddr), d.beats.eq(u.beats),
                     d.acc.eq(u.acc), d.zp.eq(u.zp), d.pc.eq(u.pc),
                     feeder.wr_addr.eq(u.oaddr), r.acc.eq(accs.value), r.addr.eq(u.oaddr)]
        ready = accs.idle & (params_ok | (u.kind == UopKind.CLR))  # CLR's and LDB's
        if self._p["conv"]:
            # a window DOT with no kept tap is dropped: nothing pending on its accumulator;
            # a bank is busy while the writeback reads it out (CLR waits)
            m.d.comb += [accs.issued.eq(taken & ~feeder.dot_empty),
                         d.win.eq(u.win), d.i0.eq(u.i0), d.i1.eq(u.i1),
                         *[d.geom[k].eq(u.window[k]) for k, _ in u.window.shape()],
                         r.bank.eq(u.acc >= N_ACC), r.bank_no.eq(u.acc[0]),
                         r.round.eq(u.round), r.ch.eq(u.ch), r.pc.eq(u.pc)]
            ready = ready & ~((u.acc >= N_ACC) & wb.bank_busy.bit_select(u.acc[0], 1))
        else:
            m.d.comb += [accs.issued.eq(taken), r.refused.eq(p_rd.data.refused),
                         *[getattr(r.p, k).eq(getattr(p_rd.data, k)) for k in (
                             "multiplier", "shift", "output_zero_point", "act_min",
                             "act_max")]]
        with m.If(uop.valid):
            with m.Switch(u.kind):
                with m.Case(UopKind.CLR, UopKind.LDB):
                    with m.If(ready):
                        m.d.comb += [uop.ready.eq(1), accs.write.eq(1),
                                     accs.write_value.eq(Mux(u.kind == UopKind.LDB,
                                                             p_rd.data.bias, 0))]
                with m.Case(UopKind.REQ):
                    with m.If(accs.idle & ~feeder.wr_blocked & params_ok):
                        m.d.comb += [wb.i.valid.eq(1), uop.ready.eq(wb.i.ready)]
                with m.Case(UopKind.DOT):
                    # (a window DOT keeping a tap outside the memory is refused, not taken:
                    # the error stops the Sequencer with it not done, as golden raises)
                    ok = (accs.tag.ready & ~feeder.dot_fault) if self._p["conv"] \
                        else accs.tag.ready
                    m.d.comb += [feeder.dot.valid.eq(ok),
                                 uop.ready.eq(feeder.dot.ready & ok)]

    def _ordered_faults(self, m, seq, uop, accs, wb, feeder):
        """The error contract (``_faults``) on a convolution core, where faults do not come
        in program order: a REQW's lanes fault up to ``lanes - 1`` cycles after it is taken,
        while later DOTs may deliver theirs. So every uop taken gets an issue number
        (``order``, counting modulo a window wider than anything in flight), each fault
        carries its instruction's, and the earliest one is kept: a DOT's from a FIFO of the
        numbers of the DOTs in flight (their results come back in order), a REQ's (the
        writeback reports it two cycles after it entered the Requantizer) the number it was
        taken with, a window tap's (whose DOT is not taken) the number being given out. The
        Sequencer's own error (an instruction it never issued) comes after everything
        taken: a datapath fault's pc replaces it."""
        p, u = self._p, uop.payload
        window = (accs.bound * 15 * -(-p["lanes"] // p["slots"]) + 4 * p["lanes"]) * 2
        bits = window.bit_length()
        order, reqw_order = Signal(bits, name="issue_order"), Signal(bits, name="reqw_order")
        taken = uop.valid & uop.ready
        with m.If(seq.start):
            m.d.sync += order.eq(0)
        with m.Elif(taken):
            m.d.sync += order.eq(order + 1)
        wb_take = wb.i.valid & wb.i.ready
        with m.If(wb_take):
            m.d.sync += reqw_order.eq(order)
        # the number of the REQ whose fault shows now (registered twice in the writeback)
        wb_entering, wb_order = Signal(bits), Signal(bits)
        m.d.sync += [wb_entering.eq(Mux(wb_take, order, reqw_order)), wb_order.eq(wb_entering)]
        m.submodules.dot_orders = dots = SyncFIFOBuffered(width=bits, depth=accs.bound + 1)
        m.d.comb += [dots.w_data.eq(order), dots.w_en.eq(accs.issued),
                     dots.r_en.eq(accs.result.valid & accs.result.ready)]
        # (a window DOT keeping a tap outside the memory is not taken: ``_execute``)
        tap = uop.valid & (u.kind == UopKind.DOT) & feeder.dot_fault
        incoming = [(accs.fault, accs.fault_pc, dots.r_data),
                    (wb.fault, wb.fault_pc, wb_order),
                    (tap, u.pc, order)]
        dp_error = Signal()
        dp_pc, dp_order = Signal(range(p["prog_depth"])), Signal(bits)
        m.d.comb += [seq.abort.eq(dp_error), self.error.eq(seq.error | dp_error),
                     self.error_pc.eq(Mux(dp_error, dp_pc, seq.error_pc))]

        def before(a, b):  # issue number a comes before b (modulo the window)
            return ((a - b)[:bits])[bits - 1]
        with m.If(seq.start):
            m.d.sync += dp_error.eq(0)
        for k, (valid, pc, num) in enumerate(incoming):
            earliest = valid & (~dp_error | before(num, dp_order))
            for j, (v2, _, n2) in enumerate(incoming):
                if j != k:
                    earliest = earliest & (~v2 | before(num, n2) if j < k else
                                           ~v2 | ~before(n2, num))
            with m.If(~seq.start & earliest):
                m.d.sync += [dp_error.eq(1), dp_pc.eq(pc), dp_order.eq(num)]

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
