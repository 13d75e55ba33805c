// Compiled Verilator testbench for an rtlgen accelerator top level (AXI-Stream in, AXI-Stream out).
//
// Built by sim/verilator_harness.py with `verilator --cc --exe --build --prefix Vtop`; the build
// directory holds a generated `harness_config.h` that names the model class and the TDATA widths:
//
//     #define HARNESS_TOP_NAME "my_top"
//     #define HARNESS_IN_W 200
//     #define HARNESS_OUT_W 72
//     #define HARNESS_HAS_S_TLAST 1
//     #define HARNESS_HAS_ERROR 1
//     #include "Vtop.h"
//     typedef Vtop HarnessTop;
//
// Ports expected: ap_clk, ap_rst_n (active low), s_axis_tdata/tvalid/tready,
// m_axis_tdata/tvalid/tready/tlast; optional: s_axis_tlast (driven on the last word of every input
// frame) and error (watched: the cycle it first reads 1 is reported).
//
// Usage:
//   harness --in IN.hex --out OUT.txt --n-out M [--in-per-frame A] [--out-per-frame B]
//           [--p-in P] [--p-out P] [--seed S] [--watchdog K] [--reset-cycles R] [--trace FILE.vcd|FILE.fst]
//           [--drop-word F:J]... [--extra-word F:J]... [--in-cycles-per-word K] [--out-cycles-per-word K]
//
// IN.hex: one input word a line, hexadecimal (no prefix needed, "0x" accepted), least significant
// bit = bit 0 of s_axis_tdata. The words form frames of A words; each frame is sent as beats with
// TLAST on its last beat. A line "WORD last" marks its beat's TLAST explicitly (a DMA transfer of any
// length); with any marks, TLAST is on exactly the marked beats and the last one. Corrupted frames, to test
// the core's input framer:
//   --drop-word F:J    frame F loses its word J (A-1 beats, TLAST on the last of them)
//   --extra-word F:J   frame F gets a copy of its word J inserted before it (A+1 beats)
// DMA-side pacing, for widths that differ between a DMA and the core:
//   --in-cycles-per-word K   the source gathers K beats (one a cycle) into each input word, so a new
//                            word is offered at most every K cycles (K = 1: every cycle)
//   --out-cycles-per-word K  the sink takes an output word, then needs K cycles to pass it on, so
//                            m_axis_tready is high at most once every K cycles
// OUT.txt (written on success):
//   status ok
//   cycles T            cycles simulated after reset (last output handshake cycle + 1)
//   in_accepted A       input beats accepted
//   in_beats B          input beats in the stimulus (after corruption)
//   o HEX TLAST CYCLE   one line per output word, in order
//   i FRAME CYCLE       cycle of the first input handshake of each input frame
//   error_rise CYCLE BEATS   only if `error` read 1: the first edge after which it did, and the input
//                            beats accepted up to and including that edge
// Cycle c is the c-th rising edge of ap_clk after reset was released (the first is cycle 0); a
// handshake "in cycle c" means tvalid && tready were both high at that edge.
// On failure the program prints one line starting with "harness: " to stderr and exits non-zero.

#include "harness_config.h"

#ifndef HARNESS_HAS_S_TLAST
#define HARNESS_HAS_S_TLAST 0
#endif
#ifndef HARNESS_HAS_ERROR
#define HARNESS_HAS_ERROR 0
#endif

#include "verilated.h"
#if VM_TRACE_FST
#include "verilated_fst_c.h"
typedef VerilatedFstC HarnessTrace;
#elif VM_TRACE_VCD
#include "verilated_vcd_c.h"
typedef VerilatedVcdC HarnessTrace;
#endif

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <map>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

constexpr int kInChunks = (HARNESS_IN_W + 31) / 32;
constexpr int kOutChunks = (HARNESS_OUT_W + 31) / 32;

[[noreturn]] void fail(const std::string& msg) {
    std::fprintf(stderr, "harness: %s\n", msg.c_str());
    std::fflush(stderr);
    std::exit(3);
}

// ---- moving words between 32-bit chunk arrays (least significant chunk first) and ports ----------
// Ports of 1..64 bits are plain integers (CData/SData/IData/QData), wider ones are VlWide<N>.

template <typename T>
void put_port(T& port, const uint32_t* chunks, int width) {
    static_assert(std::is_integral<T>::value, "scalar port expected");
    uint64_t v = chunks[0];
    if (width > 32) v |= static_cast<uint64_t>(chunks[1]) << 32;
    port = static_cast<T>(v);
}

template <std::size_t N>
void put_port(VlWide<N>& port, const uint32_t* chunks, int /*width*/) {
    for (std::size_t i = 0; i < N; ++i) port.m_storage[i] = chunks[i];
}

template <typename T>
void get_port(const T& port, uint32_t* chunks, int width) {
    static_assert(std::is_integral<T>::value, "scalar port expected");
    const uint64_t v = static_cast<uint64_t>(port);
    chunks[0] = static_cast<uint32_t>(v);
    if (width > 32) chunks[1] = static_cast<uint32_t>(v >> 32);
}

template <std::size_t N>
void get_port(const VlWide<N>& port, uint32_t* chunks, int /*width*/) {
    for (std::size_t i = 0; i < N; ++i) chunks[i] = port.m_storage[i];
}

// The generated header and the model must agree on the widths; catch a mismatch at compile time.
template <typename T>
constexpr bool port_fits(int width) {
    return width <= static_cast<int>(sizeof(T) * 8) && (width > 32) == (sizeof(T) == 8);
}
template <typename T>
struct PortWords {
    static constexpr int words(int width) { return port_fits<T>(width) ? (width + 31) / 32 : -1; }
};
template <std::size_t N>
struct PortWords<VlWide<N>> {
    static constexpr int words(int) { return static_cast<int>(N); }
};

// ---- hex text <-> chunks --------------------------------------------------------------------------

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Parses one hex word into `chunks` (n_chunks words, zeroed first); false when malformed or wider
// than `width` bits. Nibbles never straddle a 32-bit chunk.
bool parse_hex(const char* begin, const char* end, uint32_t* chunks, int n_chunks, int width) {
    std::memset(chunks, 0, sizeof(uint32_t) * n_chunks);
    if (end - begin >= 2 && begin[0] == '0' && (begin[1] == 'x' || begin[1] == 'X')) begin += 2;
    if (begin == end) return false;
    int bit = 0;
    for (const char* p = end; p != begin;) {
        --p;
        if (*p == '_') continue;
        const int v = hex_value(*p);
        if (v < 0) return false;
        if (v != 0) {
            if (bit >= width || (width - bit < 4 && (v >> (width - bit)) != 0)) return false;
            chunks[bit / 32] |= static_cast<uint32_t>(v) << (bit % 32);
        }
        bit += 4;
    }
    return true;
}

void write_hex(std::FILE* f, const uint32_t* chunks, int n_chunks) {
    int top = n_chunks - 1;
    while (top > 0 && chunks[top] == 0) --top;
    std::fprintf(f, "%x", chunks[top]);
    for (int i = top - 1; i >= 0; --i) std::fprintf(f, "%08x", chunks[i]);
}

// ---- seeded randomness (splitmix64: identical sequences on every platform) -----------------------

struct Rng {
    uint64_t state;
    explicit Rng(uint64_t seed) : state(seed) {}
    uint64_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // true with probability p
    bool chance(double p) {
        if (p <= 0.0) return false;
        return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0) < p;
    }
};

struct Options {
    std::string in_path, out_path, trace_path;
    long long n_out = -1;
    long long in_per_frame = 1;
    long long out_per_frame = 1;
    double p_in = 0.0, p_out = 0.0;
    unsigned long long seed = 0;
    long long watchdog = 100000;
    int reset_cycles = 4;
    long long in_cycles_per_word = 1;
    long long out_cycles_per_word = 1;
    std::map<long long, long long> drop_word;   // frame -> word index removed
    std::map<long long, long long> extra_word;  // frame -> word index duplicated
};

long long parse_int(const char* name, const char* text) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text, &end, 0);
    if (errno || end == text || *end) fail(std::string("bad integer for ") + name + ": " + text);
    return v;
}

// "F:J" -> (F, J), both >= 0
std::pair<long long, long long> parse_pair(const char* name, const char* text) {
    const char* colon = std::strchr(text, ':');
    if (!colon) fail(std::string("bad value for ") + name + " (need FRAME:WORD): " + text);
    const std::string first(text, colon);
    const long long f = parse_int(name, first.c_str());
    const long long j = parse_int(name, colon + 1);
    if (f < 0 || j < 0) fail(std::string("negative frame or word for ") + name + ": " + text);
    return {f, j};
}

double parse_prob(const char* name, const char* text) {
    char* end = nullptr;
    const double v = std::strtod(text, &end);
    if (end == text || *end || !(v >= 0.0 && v < 1.0))
        fail(std::string("bad probability for ") + name + " (need 0 <= p < 1): " + text);
    return v;
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.rfind("+verilator+", 0) == 0) continue;  // Verilator runtime options
        if (i + 1 >= argc) fail("missing value after " + a);
        const char* v = argv[++i];
        if (a == "--in") o.in_path = v;
        else if (a == "--out") o.out_path = v;
        else if (a == "--trace") o.trace_path = v;
        else if (a == "--n-out") o.n_out = parse_int("--n-out", v);
        else if (a == "--in-per-frame") o.in_per_frame = parse_int("--in-per-frame", v);
        else if (a == "--out-per-frame") o.out_per_frame = parse_int("--out-per-frame", v);
        else if (a == "--p-in") o.p_in = parse_prob("--p-in", v);
        else if (a == "--p-out") o.p_out = parse_prob("--p-out", v);
        else if (a == "--seed") o.seed = static_cast<unsigned long long>(parse_int("--seed", v));
        else if (a == "--watchdog") o.watchdog = parse_int("--watchdog", v);
        else if (a == "--reset-cycles") o.reset_cycles = static_cast<int>(parse_int("--reset-cycles", v));
        else if (a == "--in-cycles-per-word") o.in_cycles_per_word = parse_int("--in-cycles-per-word", v);
        else if (a == "--out-cycles-per-word") o.out_cycles_per_word = parse_int("--out-cycles-per-word", v);
        else if (a == "--drop-word" || a == "--extra-word") {
            const auto fj = parse_pair(a.c_str(), v);
            if (o.drop_word.count(fj.first) || o.extra_word.count(fj.first))
                fail("frame " + std::to_string(fj.first) + " is corrupted twice (one --drop-word or --extra-word a frame)");
            (a == "--drop-word" ? o.drop_word : o.extra_word)[fj.first] = fj.second;
        }
        else fail("unknown option " + a);
    }
    if (o.in_path.empty() || o.out_path.empty() || o.n_out < 0)
        fail("usage: harness --in IN.hex --out OUT.txt --n-out M [--in-per-frame A] [--out-per-frame B] "
             "[--p-in P] [--p-out P] [--seed S] [--watchdog K] [--reset-cycles R] [--trace FILE.vcd|FILE.fst] "
             "[--drop-word F:J]... [--extra-word F:J]... [--in-cycles-per-word K] [--out-cycles-per-word K]");
    if (o.in_per_frame < 1 || o.out_per_frame < 1 || o.watchdog < 1 || o.reset_cycles < 1 ||
        o.in_cycles_per_word < 1 || o.out_cycles_per_word < 1)
        fail("--in-per-frame, --out-per-frame, --watchdog, --reset-cycles and --*-cycles-per-word must be >= 1");
    for (const auto* corrupt : {&o.drop_word, &o.extra_word})
        for (const auto& fj : *corrupt)
            if (fj.second >= o.in_per_frame)
                fail("word " + std::to_string(fj.second) + " of frame " + std::to_string(fj.first) +
                     " does not exist (" + std::to_string(o.in_per_frame) + " words a frame)");
    if (!o.drop_word.empty() && o.in_per_frame == 1) fail("--drop-word would leave an empty frame (1 word a frame)");
    return o;
}

// Each line: a hex word, optionally followed by " last" (explicit framing: that beat carries TLAST, as a DMA
// transfer of any length ends; with any such mark, TLAST is exactly on the marked beats and --in-per-frame only
// counts frames for the statistics).
std::vector<uint32_t> read_words(const std::string& path, long long& n_words, std::vector<uint8_t>& marks) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("cannot open input file " + path + ": " + std::strerror(errno));
    std::string text;
    char block[1 << 16];
    std::size_t got;
    while ((got = std::fread(block, 1, sizeof(block), f)) > 0) text.append(block, got);
    std::fclose(f);

    std::vector<uint32_t> data;
    n_words = 0;
    long long line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        ++line_no;
        std::size_t b = pos, e = eol;
        pos = eol + 1;
        while (b < e && (text[b] == ' ' || text[b] == '\t' || text[b] == '\r')) ++b;
        while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r')) --e;
        if (b == e || text[b] == '#') continue;
        std::size_t word_end = b;
        while (word_end < e && text[word_end] != ' ' && text[word_end] != '\t') ++word_end;
        std::size_t mark = word_end;
        while (mark < e && (text[mark] == ' ' || text[mark] == '\t')) ++mark;
        if (mark < e && text.compare(mark, e - mark, "last") != 0)
            fail(path + ":" + std::to_string(line_no) + ": after the word only 'last' may follow: '" +
                 text.substr(b, std::min<std::size_t>(e - b, 80)) + "'");
        marks.push_back(mark < e ? 1 : 0);
        e = word_end;
        data.resize(data.size() + kInChunks);
        if (!parse_hex(text.data() + b, text.data() + e, &data[data.size() - kInChunks], kInChunks, HARNESS_IN_W))
            fail(path + ":" + std::to_string(line_no) + ": not a hex word of at most " +
                 std::to_string(HARNESS_IN_W) + " bits: '" + text.substr(b, std::min<std::size_t>(e - b, 80)) + "'");
        ++n_words;
    }
    return data;
}

// The beats sent: index of the input word each carries and its TLAST, frames of in_per_frame words with
// the corruptions applied (a frame's last beat carries TLAST, a partial last frame included).
struct Beats {
    std::vector<long long> word;
    std::vector<uint8_t> last;
    std::vector<uint8_t> first;  // first beat of a frame
};

Beats make_beats(const Options& o, long long n_words, const std::vector<uint8_t>& marks) {
    Beats b;
    if (std::find(marks.begin(), marks.end(), 1) != marks.end()) {  // explicit framing
        if (!o.drop_word.empty() || !o.extra_word.empty()) fail("--drop-word/--extra-word need unmarked input words");
        for (long long w = 0; w < n_words; ++w) {
            b.word.push_back(w);
            b.last.push_back(marks[static_cast<std::size_t>(w)] || w + 1 == n_words ? 1 : 0);
            b.first.push_back(w == 0 || marks[static_cast<std::size_t>(w - 1)] ? 1 : 0);
        }
        return b;
    }
    const long long n_frames = (n_words + o.in_per_frame - 1) / o.in_per_frame;
    for (const auto* corrupt : {&o.drop_word, &o.extra_word})
        for (const auto& fj : *corrupt)
            if (fj.first >= n_frames || fj.first * o.in_per_frame + fj.second >= n_words)
                fail("frame " + std::to_string(fj.first) + " word " + std::to_string(fj.second) +
                     " to corrupt is not in the input (" + std::to_string(n_words) + " words)");
    for (long long f = 0; f < n_frames; ++f) {
        const long long start = f * o.in_per_frame;
        const long long end = std::min(n_words, start + o.in_per_frame);
        std::vector<long long> frame;
        for (long long w = start; w < end; ++w) {
            const long long j = w - start;
            const auto extra = o.extra_word.find(f);
            if (extra != o.extra_word.end() && extra->second == j) frame.push_back(w);
            const auto drop = o.drop_word.find(f);
            if (drop != o.drop_word.end() && drop->second == j) continue;
            frame.push_back(w);
        }
        for (std::size_t k = 0; k < frame.size(); ++k) {
            b.word.push_back(frame[k]);
            b.last.push_back(k + 1 == frame.size() ? 1 : 0);
            b.first.push_back(k == 0 ? 1 : 0);
        }
    }
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    const Options opt = parse_args(argc, argv);

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<HarnessTop>(ctx.get(), HARNESS_TOP_NAME);

    static_assert(PortWords<std::remove_reference_t<decltype(top->s_axis_tdata)>>::words(HARNESS_IN_W) == kInChunks,
                  "s_axis_tdata width in harness_config.h does not match the model");
    static_assert(PortWords<std::remove_reference_t<decltype(top->m_axis_tdata)>>::words(HARNESS_OUT_W) == kOutChunks,
                  "m_axis_tdata width in harness_config.h does not match the model");

    long long n_words = 0;
    std::vector<uint8_t> marks;
    const std::vector<uint32_t> in_data = read_words(opt.in_path, n_words, marks);
    const Beats beats = make_beats(opt, n_words, marks);
    const long long n_in = static_cast<long long>(beats.word.size());
    const long long n_out = opt.n_out;

    std::vector<uint32_t> out_data(static_cast<std::size_t>(n_out) * kOutChunks);
    std::vector<uint8_t> out_last(static_cast<std::size_t>(n_out));
    std::vector<long long> out_cycle(static_cast<std::size_t>(n_out));
    std::vector<long long> frame_first_in;
    frame_first_in.reserve(static_cast<std::size_t>(n_in / opt.in_per_frame + 1));

#if VM_TRACE_FST || VM_TRACE_VCD
    std::unique_ptr<HarnessTrace> tfp;
    if (!opt.trace_path.empty()) {
        ctx->traceEverOn(true);
        tfp = std::make_unique<HarnessTrace>();
        top->trace(tfp.get(), 99);
        tfp->open(opt.trace_path.c_str());
    }
    auto dump = [&]() {
        if (tfp) tfp->dump(ctx->time());
    };
#else
    if (!opt.trace_path.empty()) fail("--trace needs a harness built with tracing (CompiledHarness.build(..., trace=\"vcd\"))");
    auto dump = []() {};
#endif

    Rng rng_in(opt.seed * 2 + 1);
    Rng rng_out(opt.seed * 2 + 2);
    const uint32_t zero_in[kInChunks] = {};

    // Reset: a few cycles with ap_rst_n low and both streams idle.
    top->ap_clk = 0;
    top->ap_rst_n = 0;
    top->s_axis_tvalid = 0;
    put_port(top->s_axis_tdata, zero_in, HARNESS_IN_W);
#if HARNESS_HAS_S_TLAST
    top->s_axis_tlast = 0;
#endif
    top->m_axis_tready = 0;
    top->eval();
    dump();
    for (int i = 0; i < opt.reset_cycles; ++i) {
        ctx->timeInc(1);
        top->ap_clk = 1;
        top->eval();
        dump();
        ctx->timeInc(1);
        top->ap_clk = 0;
        top->eval();
        dump();
    }
    top->ap_rst_n = 1;

    long long next_in = 0;      // index of the next input beat to present
    bool presenting = false;    // s_axis_tvalid currently high with beat next_in
    long long got = 0;          // output words received
    long long cycle = 0;
    long long last_progress = 0;
    long long gathered = opt.in_cycles_per_word;  // DMA beats gathered into the next input word
    long long out_busy = 0;     // cycles the sink still needs to pass on the last output word
    long long error_cycle = -1, error_beats = -1;
    uint32_t chunk_buf[kOutChunks];

    while (got < n_out) {
        // Drive inputs for this cycle (ap_clk is low). tvalid/tdata/tlast stay put while not accepted.
        if (!presenting && next_in < n_in && gathered >= opt.in_cycles_per_word && !rng_in.chance(opt.p_in)) {
            presenting = true;
            gathered = 0;
            const std::size_t word = static_cast<std::size_t>(beats.word[static_cast<std::size_t>(next_in)]);
            put_port(top->s_axis_tdata, &in_data[word * kInChunks], HARNESS_IN_W);
#if HARNESS_HAS_S_TLAST
            top->s_axis_tlast = beats.last[static_cast<std::size_t>(next_in)];
#endif
        }
        top->s_axis_tvalid = presenting ? 1 : 0;
        const bool stall = rng_out.chance(opt.p_out);  // drawn every cycle, so the sequence is the same for any K
        top->m_axis_tready = (stall || out_busy > 0) ? 0 : 1;
        ctx->timeInc(1);
        top->eval();
        dump();

        // Sample the handshakes that happen at this rising edge.
        const bool in_fire = presenting && top->s_axis_tready;
        const bool out_fire = top->m_axis_tvalid && top->m_axis_tready;
        if (out_fire) {
            get_port(top->m_axis_tdata, chunk_buf, HARNESS_OUT_W);
            std::memcpy(&out_data[static_cast<std::size_t>(got) * kOutChunks], chunk_buf, sizeof(chunk_buf));
            out_last[static_cast<std::size_t>(got)] = top->m_axis_tlast ? 1 : 0;
            out_cycle[static_cast<std::size_t>(got)] = cycle;
            ++got;
            last_progress = cycle;
            out_busy = opt.out_cycles_per_word;
        }
        if (out_busy > 0) --out_busy;
        if (gathered < opt.in_cycles_per_word) ++gathered;
        if (in_fire) {
            if (beats.first[static_cast<std::size_t>(next_in)]) frame_first_in.push_back(cycle);
            ++next_in;
            presenting = false;
        }

        top->ap_clk = 1;
        ctx->timeInc(1);
        top->eval();
        dump();
        top->ap_clk = 0;
#if HARNESS_HAS_ERROR
        if (error_cycle < 0 && top->error) {
            error_cycle = cycle;
            error_beats = next_in;
        }
#endif

        if (ctx->gotFinish()) fail("the design called $finish in cycle " + std::to_string(cycle));
        ++cycle;
        if (got < n_out && cycle - last_progress > opt.watchdog) {
            fail("deadlock/stall after cycle " + std::to_string(cycle) + ": " + std::to_string(got) + " of " +
                 std::to_string(n_out) + " words (" + std::to_string(next_in) + " of " + std::to_string(n_in) +
                 " input beats accepted, no output for " + std::to_string(opt.watchdog) + " cycles)");
        }
    }
    top->final();
#if VM_TRACE_FST || VM_TRACE_VCD
    if (tfp) tfp->close();
#endif

    std::FILE* f = std::fopen(opt.out_path.c_str(), "w");
    if (!f) fail("cannot write output file " + opt.out_path + ": " + std::strerror(errno));
    std::fprintf(f, "status ok\ncycles %lld\nin_accepted %lld\nin_beats %lld\n", cycle, next_in, n_in);
    if (error_cycle >= 0) std::fprintf(f, "error_rise %lld %lld\n", error_cycle, error_beats);
    for (long long i = 0; i < n_out; ++i) {
        std::fputs("o ", f);
        write_hex(f, &out_data[static_cast<std::size_t>(i) * kOutChunks], kOutChunks);
        std::fprintf(f, " %d %lld\n", out_last[static_cast<std::size_t>(i)], out_cycle[static_cast<std::size_t>(i)]);
    }
    for (std::size_t i = 0; i < frame_first_in.size(); ++i) std::fprintf(f, "i %zu %lld\n", i, frame_first_in[i]);
    if (std::fclose(f) != 0) fail("cannot write output file " + opt.out_path);
    return 0;
}
