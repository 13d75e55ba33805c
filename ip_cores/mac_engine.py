"""The free-running datapath the MVTU and the vector unit share: products -> registered adder trees ->
accumulators -> activation -> output queue.

A core issues one step a cycle (docs/CONTRACTS.md): it picks the input word and the weight word of the step and
says whether the step is the first or the last of its fold (the terms of one output word). Everything after
the issue moves one stage a cycle and never stops:

    cycle 0        issue: the core's counters, memory addresses, `reserve` a place in the output queue
    cycle R        input word and weight word (R = the slower memory's read latency, at least 1)
    R .. R+P       DSP48 products: operands, M and P registers (P = 3); LUT terms: none (P = 0)
    .. S = R+P+T   per lane, the sum of the step's terms (`pipelined_sum`, a register every two narrow levels)
    S + 1 = A0     accumulators: first step loads, later steps add; after the fold's last step they hold
                   the fold's dot products
    A0 + A         the activation's output word (ip_cores/activation.py), written into the output queue
    A0 + A + 2     offered on `o` (the queue's read latency)

So a fold's word is offered `latency` = A0 + A + 2 cycles after its last step was issued. Back-pressure stops
only the issue (`may_reserve`: a credit for every output word in flight), never a datapath register, so
`o.ready` has no path into the datapath.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned

from .activation import ActivationStage
from .elements import ElementFormat, pack_words, signed_width_for, unsigned_width_for, word_element
from .mac_terms import (doubled_product, dsp_packing, is_table_product, packed_products, product_term_ranges,
                        product_term_shifts, product_terms)
from .memories import plan_rom, read_rom
from .pipeline import LEVELS_PER_STAGE, OutputQueue, Timed, pipelined_sum, registered, tree_register_levels
from .resources import Resources, adder_tree_cost, fifo_cost

__all__ = ["MacEngine", "LEVELS_PER_STAGE"]



class MacEngine:
    """The shared datapath of one core: `lanes` dot products of `terms_per_step` products a step.

    `n_terms` is the number of products in one output (MW or K: sets the XNOR popcount's width),
    `steps_per_output` the steps of one fold (SF or K), `n_folds` the folds of one vector (NF or CF),
    `input_latency` the cycles from the issue to the input and weight words (R).
    """

    def __init__(self, *, lanes: int, terms_per_step: int, in_fmt: ElementFormat, w_fmt: ElementFormat,
                 acc_width: int, n_terms: int, steps_per_output: int, n_folds: int, activation: ActivationStage,
                 mac_resource: str, input_latency: int, channel_constants: list[int] | None = None,
                 dsp_packed: bool = False):
        self.lanes, self.terms_per_step = int(lanes), int(terms_per_step)
        self.in_fmt, self.w_fmt, self.acc_width = in_fmt, w_fmt, int(acc_width)
        self.n_terms, self.steps_per_output, self.n_folds = int(n_terms), int(steps_per_output), int(n_folds)
        self.activation, self.mac_resource = activation, mac_resource
        self.xnor = in_fmt.is_bipolar and w_fmt.is_bipolar
        self.input_latency = max(1, int(input_latency))
        # A bipolar input: the accumulator sums 2 * (x ? w : 0) and starts each fold at -sum(w) of its channel.
        self.doubled = doubled_product(in_fmt, w_fmt)
        self.channel_constants = list(channel_constants) if channel_constants is not None else None
        if self.doubled and self.channel_constants is None:
            raise ValueError("a bipolar input with integer weights needs the channels' weight sums")
        self.constant_table = None
        if self.channel_constants is not None and self.n_folds > 1 and len(set(self.channel_constants)) > 1:
            width = signed_width_for(min(self.channel_constants), max(self.channel_constants))
            self.constant_fmt = ElementFormat.signed(width)
            self.constant_table = plan_rom(self.n_folds, self.lanes * width)
        # A DSP48 product has its operands registered right before it (each lane's own copy: the DSP's A and B
        # registers, so no memory output multiplexer or shared net sits in front of the multiplier) and is
        # registered twice (its MREG and PREG: the P output then leaves in 0.3 ns); a table product is a LUT of
        # its own, so its tree registers after one adder level.
        self.dsp_products = mac_resource == "dsp" and not (in_fmt.is_bipolar or w_fmt.is_bipolar)
        self.product_stages = 3 if self.dsp_products else 0
        # Packed DSP products (ip_cores/mac_terms.py): `pack` lanes share one DSP48, their weights k bits apart.
        self.pack, self.pack_k = dsp_packing(in_fmt, w_fmt, self.lanes) if dsp_packed and self.dsp_products \
            else (1, 0)
        first_stage_levels = 1 if is_table_product(in_fmt, w_fmt, mac_resource) else LEVELS_PER_STAGE
        self.term_ranges = product_term_ranges(in_fmt, w_fmt, self.mac_resource) * self.terms_per_step
        self.tree_registers = tree_register_levels(self.term_ranges, first_stage_levels)
        self.tree_stages = sum(self.tree_registers)
        self.acc_cycle = self.input_latency + self.product_stages + self.tree_stages + 1  # A0
        self.write_cycle = self.acc_cycle + activation.latency
        self.latency = self.write_cycle + OutputQueue.read_latency
        self.queue_depth = OutputQueue.depth_for(self.write_cycle, self.steps_per_output)

    @property
    def tree_terms_per_lane(self) -> int:
        """Terms a lane's adder tree sums in one step (ip_cores/mac_terms.py: one per product for XNOR, DSP and
        small table products, two for a bipolar-by-integer one, one per bit of the narrower operand else)."""
        return self.terms_per_step * len(product_term_ranges(self.in_fmt, self.w_fmt, self.mac_resource))

    def resources(self) -> Resources:
        """Analytic estimate of the datapath after the issue: trees, products, accumulators, activation, queue
        and the control that travels beside the data."""
        shifts = product_term_shifts(self.in_fmt, self.w_fmt, self.mac_resource) * self.terms_per_step
        tree = adder_tree_cost(self.term_ranges, self.tree_registers, shifts, self.product_stages > 0).scaled(self.lanes)
        dsp = -(-self.lanes // self.pack) * self.terms_per_step if self.product_stages else 0
        acc_w = self.accumulator_shape().width
        accumulators = Resources(self.lanes * acc_w, self.lanes * acc_w)
        out_w = self.lanes * self.activation.out_fmt.width
        queue = fifo_cost(out_w, self.queue_depth + 2) + Resources(6, 2 * self.queue_depth.bit_length() + 1)
        fold_bits = max(1, (self.n_folds - 1).bit_length())
        control = Resources(4, 3 * (self.acc_cycle - 1) + self.write_cycle + fold_bits * self.write_cycle)
        constants = Resources.of_memory(self.constant_table) if self.constant_table is not None else Resources()
        return tree + Resources(0, 0, 0, dsp) + accumulators + self.activation.resources() + queue + control + constants

    def _lane_constants(self, m: Module, fold: Timed, cycle: int) -> list:
        """Each lane's channel constant at `cycle` (the fold's first step in the accumulator): 0, a Python int, or
        a field of a per-fold table read ahead."""
        if self.channel_constants is None:
            return [0] * self.lanes
        if self.constant_table is None:
            values = self.channel_constants
            return [values[p] if self.n_folds == 1 else values[0] for p in range(self.lanes)]
        plan = self.constant_table
        words = pack_words(self.channel_constants, self.constant_fmt, self.lanes)
        word = read_rom(m, "channel_constants", plan, words, fold.at(cycle - plan.read_latency))
        return [word_element(word, p, self.constant_fmt) for p in range(self.lanes)]

    def accumulator_shape(self):
        return unsigned(unsigned_width_for(self.n_terms)) if self.xnor else signed(self.acc_width)

    def _lane_products(self, m: Module, p: int, lane_pairs: list) -> tuple[list, int]:
        """Lane p's product terms of one step, `product_stages` cycles after its operands, and their constant."""
        terms, constant = [], 0
        for s, (x, w) in enumerate(lane_pairs):
            if self.dsp_products:
                x, w = registered(m, x, f"dsp{p}_{s}_a"), registered(m, w, f"dsp{p}_{s}_b")
            t = product_terms(x, w, self.in_fmt, self.w_fmt, self.mac_resource)
            terms += t.terms
            constant += t.constant
        for stage in range(self.product_stages - (1 if self.dsp_products else 0)):
            terms = [registered(m, t, f"prod{p}_{k}_r{stage}") for k, t in enumerate(terms)]
        return terms, constant

    def _packed_products(self, m: Module, pairs: list) -> list[tuple[list, int]]:
        """Every lane's products of one step with `pack` lanes to a DSP48 (ip_cores/mac_terms.py): the
        lanes of a pack multiply the same input element (the first lane's), registered once per DSP (its B
        register), their weights in its A and D registers; the products leave the M and P registers, where
        the packing's constant is added."""
        lane_terms = [([], 0) for _ in pairs]
        for g in range(0, self.lanes, self.pack):
            members = list(range(g, min(g + self.pack, self.lanes)))
            for s in range(self.terms_per_step):
                x = registered(m, pairs[g][s][0], f"dsp{g}_{s}_x")
                ws = [registered(m, pairs[p][s][1], f"dsp{p}_{s}_w") for p in members]
                if len(members) == 1:
                    product, offset, unpack = x * ws[0], 0, (lambda v: [v])
                else:
                    product, offset, unpack = packed_products(x, ws, self.pack_k)
                product = registered(m, product, f"dsp{g}_{s}_m")
                product = registered(m, product + offset, f"dsp{g}_{s}_p")
                for p, field in zip(members, unpack(product)):
                    lane_terms[p][0].append(field)
        return lane_terms

    def build(self, m: Module, o_stream, pairs, valid, first, last, fold: Timed, reserve, may_reserve) -> None:
        """Build the datapath in `m`.

        `pairs[p]` lists lane p's (x element, w element) values of the step, all valid at cycle
        `input_latency`; `valid`, `first`, `last` (1-bit) and `fold` (`Timed`) are the issue stage's
        (cycle 0); `reserve` takes a credit (issue of a fold's last step) and `may_reserve` (a Signal of the
        caller's) is driven with whether one is free.
        """
        R = self.input_latency
        valid = Timed(m, valid, 0, "step_valid", reset_less=False)
        first, last = Timed(m, first, 0, "step_first"), Timed(m, last, 0, "step_last")

        sums, constants = [], []
        lane_constants = self._lane_constants(m, fold, R + self.product_stages + self.tree_stages)
        lane_terms = self._packed_products(m, pairs) if self.pack > 1 else \
            [self._lane_products(m, p, lane_pairs) for p, lane_pairs in enumerate(pairs)]
        for p, (terms, constant) in enumerate(lane_terms):
            step_sum = pipelined_sum(m, terms, self.tree_registers, f"tree{p}")
            sums.append(step_sum << 1 if self.doubled else step_sum)
            constants.append(constant * self.steps_per_output + lane_constants[p])
        step_cycle = R + self.product_stages + self.tree_stages

        # Accumulators: the first step of a fold loads (with the fold's constant of the LUT products), the
        # others add. Two's complement wrap-around of partial sums is harmless: the final sum fits.
        accs = []
        for p, (step_sum, constant) in enumerate(zip(sums, constants)):
            acc = Signal(self.accumulator_shape(), name=f"acc{p}", reset_less=True)
            # Each lane has its own copy of the step's valid and first bits: one copy for PE lanes of ~20 bits
            # would load a single net with hundreds of LUTs.
            step_valid = registered(m, valid.at(step_cycle - 1), f"acc{p}_valid", reset_less=False)
            step_first = registered(m, first.at(step_cycle - 1), f"acc{p}_first")
            if self.lanes > 1:
                step_valid.attrs["keep"] = step_first.attrs["keep"] = 1  # not merged back into one register
            with m.If(step_valid):
                m.d.sync += acc.eq(Mux(step_first, constant, acc) + step_sum)
            accs.append(Timed(m, acc, self.acc_cycle, f"acc{p}"))
        done = Timed(m, registered(m, valid.at(step_cycle) & last.at(step_cycle), "acc_done", reset_less=False),
                     self.acc_cycle, "acc_done", reset_less=False)

        out = self.activation.build(m, accs, fold)
        queue = OutputQueue(len(o_stream.payload), self.queue_depth)
        m.d.comb += may_reserve.eq(queue.elaborate_into(m, "out_queue", o_stream, out.value,
                                                        done.at(self.write_cycle), reserve))
