"""The terms one product x * w contributes to a dot product, for LUT logic or for a DSP48 multiplier.

A dot product is the sum of all terms of all its products plus a constant (`ProductTerms.constant`); the
terms feed one registered adder tree (ip_cores/pipeline.py `pipelined_sum`), so a LUT multiplier needs no
adder of its own and no register of its own:

    XNOR       x and w bipolar: the bit ~(x ^ w) (the dot product is the popcount; the cores turn it into
               2*pc - n where a signed value is needed)
    bipolar x  (integer w) the term x ? w : 0, and the dot product is 2 * (sum of terms) - sum_i w_i: the
               weights' sum is a constant of the output channel, loaded into its accumulator (`doubled`)
    bipolar w  w ? x : -x  =  (w ? x : ~x) + ~w       (~v = -v - 1 in two's complement)
    table      x and w together 6 bits or fewer (bipolar counting 1): the product itself, each of its bits one
               LUT6 of the operands' bits (a product narrower than 9 bits never becomes a DSP48 in Yosys)
    LUT        shift-and-add over the narrower operand b (n bits): x*w = sum_j (b_j ? a : 0) << j, the top
               term of a signed b negated: -(v << (n-1)) = (~v << (n-1)) + 2**(n-1), the 2**(n-1) going
               into the constant; no `*` reaches synthesis, so Yosys never maps it to a DSP48
    DSP        the product a * w itself, for a DSP48E1 (the core registers it, Yosys packs the register
               into the DSP's MREG)

`mac_resource_for(in_fmt, w_fmt, "auto")` is the default choice: a DSP for products whose operands are both
5 bits or wider, LUT logic otherwise.

Packed DSP products ("dsp_packed", `dsp_packing`). Lanes that multiply the same input element by different
weights (the MVTU's PEs) can share one DSP48E1: with n weights of the same step packed into its 25-bit A
operand at a spacing of k bits (k = the product's signed width), the multiplier computes every product at once,

    P = (w_0 + w_1 * 2**k + ... + w_{n-1} * 2**((n-1)k)) * x + C,   C = sum_{i < n-1} 2**(i*k + k-1)

The constant C (the DSP's post-adder) lifts each lower product into [0, 2**k), so no product borrows from the
one above it: field i of P (bits i*k .. i*k+k-1) with its top bit inverted, read as a signed number, is exactly
w_i * x, and the top field is w_{n-1} * x as it stands. The packing is `(w_{n-1} << (n-1)k) + ...` in the DSP's
pre-adder, so no fabric adds or subtracts anything: the bit inversion merges into the first adder's LUTs.
n is as large as the 25-bit A port allows: two 8-bit by 8-bit products, three 4-bit by 4-bit.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Mux

from .elements import ElementFormat, signed_width_for

__all__ = ["MAC_RESOURCES", "mac_resource_for", "ProductTerms", "product_terms", "product_term_ranges",
           "is_table_product", "doubled_product", "product_term_shifts", "DSP_MIN_WIDTH", "dsp_packing",
           "packed_products"]

MAC_RESOURCES = ("auto", "lut", "dsp", "dsp_packed")
DSP_A_BITS, DSP_B_BITS = 25, 18  # DSP48E1 multiplier operands (signed)
DSP_MIN_WIDTH = 5
TABLE_MAX_INPUT_BITS = 6  # a product of this many operand bits is one LUT6 per result bit


def mac_resource_for(in_fmt: ElementFormat, w_fmt: ElementFormat, choice: str = "auto") -> str:
    """"lut" or "dsp" for products of `in_fmt` by `w_fmt` (bipolar products are always LUT logic; "dsp_packed"
    products are DSP products, `dsp_packing` says how many share one DSP)."""
    if choice not in MAC_RESOURCES:
        raise ValueError(f"mac_resource must be one of {MAC_RESOURCES}, not {choice!r}")
    if in_fmt.is_bipolar or w_fmt.is_bipolar:
        return "lut"
    if choice != "auto":
        return "dsp" if choice == "dsp_packed" else choice
    return "dsp" if min(in_fmt.width, w_fmt.width) >= DSP_MIN_WIDTH else "lut"


@dataclass
class ProductTerms:
    terms: list  # Amaranth values whose sum + constant is the product
    constant: int
    doubled: bool = False  # the product is 2 * (sum of terms) - w: a bipolar input (see the module docstring)


def _signed(value, fmt: ElementFormat):
    """An element as a signed value wide enough for its range (unsigned gets a zero bit on top)."""
    return value if fmt.is_signed else Cat(value, Const(0, 1)).as_signed()


def product_terms(x, w, in_fmt: ElementFormat, w_fmt: ElementFormat, resource: str) -> ProductTerms:
    """Terms of x * w for element values `x` (in `in_fmt`) and `w` (in `w_fmt`), as `word_element` gives them."""
    if in_fmt.is_bipolar and w_fmt.is_bipolar:
        return ProductTerms([~(x ^ w)], 0)
    if in_fmt.is_bipolar:
        return ProductTerms([Mux(x, w, 0)], 0, doubled=True)
    if is_table_product(in_fmt, w_fmt, resource):
        if w_fmt.is_bipolar:
            xs = _signed(x, in_fmt)
            return ProductTerms([Mux(w, xs, -xs)], 0)
        return ProductTerms([x * w], 0)
    if w_fmt.is_bipolar:
        xs = _signed(x, in_fmt)
        return ProductTerms([Mux(w, xs, ~xs), ~w], 0)
    if resource == "dsp":
        return ProductTerms([x * w], 0)
    # Shift-and-add over the narrower operand's bits.
    (a, a_fmt), (b, b_fmt) = ((x, in_fmt), (w, w_fmt)) if in_fmt.width > w_fmt.width else ((w, w_fmt), (x, in_fmt))
    n = b_fmt.width
    terms, constant = [], 0
    for j in range(n):
        if b_fmt.is_signed and j == n - 1:
            v = Mux(b[j], _signed(a, a_fmt), 0)
            terms.append((~v) << j if j else ~v)
            constant += 1 << j
        else:
            term = Mux(b[j], a, 0)
            terms.append(term << j if j else term)
    return ProductTerms(terms, constant)


def is_table_product(in_fmt: ElementFormat, w_fmt: ElementFormat, resource: str) -> bool:
    """Whether `product_terms` makes the product one table term (a LUT per result bit)."""
    return (resource == "lut" and in_fmt.width + w_fmt.width <= TABLE_MAX_INPUT_BITS and not in_fmt.is_bipolar)


def doubled_product(in_fmt: ElementFormat, w_fmt: ElementFormat) -> bool:
    """Whether the dot product is 2 * (sum of terms) minus the weights' sum (a bipolar input, integer weights)."""
    return in_fmt.is_bipolar and not w_fmt.is_bipolar



def product_term_ranges(in_fmt: ElementFormat, w_fmt: ElementFormat, resource: str) -> list[tuple[int, int]]:
    """The value range of each term `product_terms` makes for one product (for the cost estimate)."""
    def signed_range(fmt):  # the range of `_signed(v, fmt)` and of its complement ~v
        return (fmt.min, fmt.max), (-fmt.max - 1, -fmt.min - 1)
    if in_fmt.is_bipolar and w_fmt.is_bipolar:
        return [(0, 1)]
    if in_fmt.is_bipolar:
        return [(min(0, w_fmt.min), max(0, w_fmt.max))]
    if is_table_product(in_fmt, w_fmt, resource):
        corners = [a * b for a in (in_fmt.min, in_fmt.max) for b in (w_fmt.min, w_fmt.max)]
        if w_fmt.is_bipolar:
            corners = [in_fmt.min, in_fmt.max, -in_fmt.min, -in_fmt.max]
        return [(min(corners), max(corners))]
    if w_fmt.is_bipolar:
        fmt = in_fmt
        (lo, hi), (nlo, nhi) = signed_range(fmt)
        return [(min(lo, nlo), max(hi, nhi)), (0, 1)]
    if resource == "dsp":
        corners = [a * b for a in (in_fmt.min, in_fmt.max) for b in (w_fmt.min, w_fmt.max)]
        return [(min(corners), max(corners))]
    a_fmt, b_fmt = (in_fmt, w_fmt) if in_fmt.width > w_fmt.width else (w_fmt, in_fmt)
    ranges = []
    for j in range(b_fmt.width):
        if b_fmt.is_signed and j == b_fmt.width - 1:
            lo, hi = -max(a_fmt.max, 0) - 1, -min(a_fmt.min, 0) - 1
        else:
            lo, hi = min(a_fmt.min, 0), max(a_fmt.max, 0)
        ranges.append((lo << j, hi << j))
    return ranges


def product_term_shifts(in_fmt: ElementFormat, w_fmt: ElementFormat, resource: str) -> list[int]:
    """Low bits known to be zero in each term of `product_terms` (a shift-and-add term `v << j` has j)."""
    n = len(product_term_ranges(in_fmt, w_fmt, resource))
    shift_add = (resource == "lut" and not (in_fmt.is_bipolar or w_fmt.is_bipolar)
                 and not is_table_product(in_fmt, w_fmt, resource))
    return list(range(n)) if shift_add else [0] * n


def _product_range(in_fmt: ElementFormat, w_fmt: ElementFormat) -> tuple[int, int]:
    corners = [a * b for a in (in_fmt.min, in_fmt.max) for b in (w_fmt.min, w_fmt.max)]
    return min(corners), max(corners)


def dsp_packing(in_fmt: ElementFormat, w_fmt: ElementFormat, lanes: int) -> tuple[int, int]:
    """(n, k): how many of `lanes` products of one input element by different weights share a DSP48E1 (n) at
    which bit spacing (k), see the module docstring; (1, 0) where two do not fit."""
    if in_fmt.is_bipolar or w_fmt.is_bipolar or lanes < 2:
        return 1, 0
    k = signed_width_for(*_product_range(in_fmt, w_fmt))
    x_bits = in_fmt.width + (0 if in_fmt.is_signed else 1)
    n = 1
    while n < lanes:
        a_lo = sum(w_fmt.min << (i * k) for i in range(n + 1))
        a_hi = sum(w_fmt.max << (i * k) for i in range(n + 1))
        if signed_width_for(a_lo, a_hi) > DSP_A_BITS:  # then the 25 x 18 product always fits P's 48 bits
            break
        n += 1
    return (n, k) if n > 1 and x_bits <= DSP_B_BITS else (1, 0)


def packed_products(x, ws: list, k: int):
    """The DSP-side expressions of `len(ws)` packed products of `x` (see the module docstring): the packed
    operand (pre-adder), and from the DSP's registered output `p` the exact products: `unpack(p)`."""
    n = len(ws)
    packed = ws[-1]
    for w in reversed(ws[:-1]):
        packed = (packed << k) + w
    offset = sum(1 << (i * k + k - 1) for i in range(n - 1))

    def unpack(p) -> list:
        fields = [Cat(p[i * k:i * k + k - 1], ~p[i * k + k - 1]).as_signed() for i in range(n - 1)]
        return fields + [p[(n - 1) * k:n * k].as_signed()]
    return packed * x, offset, unpack
