// The Verilated matrix-vector unit (hw/mvu/rtl/mvu.sv) behind a small C ABI, loaded by
// hw/mvu/sim.py with ctypes. A whole run of products loops over clock cycles here in
// C++: one crossing from Python per run. The parameters come from the build's
// generated "bw_params.h" (MvuConfig.verilog_params()).
#include <cstdint>
#include <cstring>

#include "Vmvu.h"
#include "bw_model.h"
#include "bw_params.h"

namespace {

constexpr int kTiles = BW_TILES, kDpes = BW_DPES, kLanes = BW_LANES, kNblk = BW_LANES / BW_BLOCK;
constexpr int kDl = kDpes * kLanes, kDe = kDpes * kNblk, kYw = kTiles * kDpes;
using bw::mask;
using bw::sext;
using Model = bw::Model<Vmvu>;
constexpr uint64_t kMantMask = mask(BW_MANT), kExpMask = mask(BW_EXPW), kAccExpMask = mask(BW_EXPW + 1);

Model* M(void* h) { return static_cast<Model*>(h); }

enum { MVU_TIMEOUT = -1, MVU_ARGS = -2, MVU_BUSY = -3 };

// Write n words at addr into tile engine te's weight memory (te < 0: every tile engine
// at once, one word a cycle). mant: (n, DPES*LANES), exp: (n, DPES*NBLK), or with a
// leading tile axis when te < 0. Returns the cycles taken.
int64_t write_weights(Model* m, int32_t te, int32_t addr, int32_t n, const int32_t* mant, const int32_t* exp) {
  Vmvu* t = m->top;
  if (te >= kTiles || addr < 0 || n < 0 || int64_t{addr} + n > BW_DEPTH) return MVU_ARGS;
  m->settle();
  if (t->busy) return MVU_BUSY;
  const int lo = te < 0 ? 0 : te, hi = te < 0 ? kTiles : te + 1;
  const uint32_t en = te < 0 ? static_cast<uint32_t>(mask(kTiles)) : 1u << te;
  const uint64_t c0 = m->cycles;
  for (int32_t w = 0; w < n; ++w) {
    for (int k = lo; k < hi; ++k) {
      const int64_t row = int64_t{k - lo} * n + w;
      for (int i = 0; i < kDl; ++i) t->w_mant[k][i] = static_cast<uint64_t>(mant[row * kDl + i]) & kMantMask;
      for (int i = 0; i < kDe; ++i) t->w_exp[k][i] = static_cast<uint64_t>(exp[row * kDe + i]) & kExpMask;
    }
    t->w_en = en;
    t->w_addr = static_cast<uint32_t>(addr + w);
    m->settle();
    m->rise();
  }
  t->w_en = 0;
  m->settle();
  return static_cast<int64_t>(m->cycles - c0);
}

// One product: fill the input buffer (x_words words), start, run to done with random
// stalls, read m outputs into y. Returns the cycles from start to done (stalls
// included) and the stall cycles inserted into *stalls, or a negative error.
int64_t run_one(Model* m, const int32_t* x_mant, const int32_t* x_exp, int32_t x_words, int32_t acc_exp,
                int32_t base, int32_t n_pass, int32_t c, int32_t split, int32_t n_out, int64_t* y, int64_t* stalls,
                uint32_t stall_pct) {
  Vmvu* t = m->top;
  for (int32_t w = 0; w < x_words; ++w) {
    for (int l = 0; l < kLanes; ++l) t->x_mant[l] = static_cast<uint64_t>(x_mant[w * kLanes + l]) & kMantMask;
    for (int b = 0; b < kNblk; ++b) t->x_exp[b] = static_cast<uint64_t>(x_exp[w * kNblk + b]) & kExpMask;
    t->x_en = 1;
    t->x_addr = static_cast<uint32_t>(w);
    m->settle();
    m->rise();
  }
  t->x_en = 0;
  t->start = 1;
  t->acc_exp = static_cast<uint64_t>(acc_exp) & kAccExpMask;
  t->base = static_cast<uint32_t>(base);
  t->n_pass = static_cast<uint32_t>(n_pass);
  t->c = static_cast<uint32_t>(c);
  t->split = static_cast<uint32_t>(split);
  t->m = static_cast<uint32_t>(n_out);
  m->settle();
  if (t->busy) {
    t->start = 0;
    return MVU_BUSY;
  }
  const uint64_t c0 = m->cycles;
  m->rise();
  t->start = 0;
  // The sequencer issues a word at every edge without a stall; a stall is drawn only
  // while words are left, so each one delays done by exactly one cycle.
  const int64_t words = int64_t{n_pass} * c;
  const uint64_t limit = 64ULL * (words + 8) * 100 / (100 - stall_pct);
  int64_t issued = 0, n_stalls = 0;
  for (;;) {
    const bool s = issued < words && m->stall(stall_pct);
    t->stall = s;
    n_stalls += s;
    issued += issued < words && !s;
    m->settle();
    m->rise();
    if (t->done) break;
    if (m->cycles - c0 > limit) return MVU_TIMEOUT;
  }
  t->stall = 0;
  const int64_t cycles = static_cast<int64_t>(m->cycles - c0);
  // The output buffer, a pass width at a time (registered: the data follows the edge).
  for (int32_t k = 0; k < n_out; k += kYw) {
    t->y_addr = static_cast<uint32_t>(k);
    m->settle();
    m->rise();
    for (int o = 0; o < kYw && k + o < n_out; ++o) y[k + o] = sext(t->y_acc[o], BW_ACC);
  }
  *stalls = n_stalls;
  return cycles;
}

}  // namespace

#pragma GCC visibility push(default)
extern "C" {

int mvu_abi_version(void) { return 1; }

// The compiled parameters (MvuConfig.verilog_params() order), for hw/mvu/sim.py to check.
void mvu_params(int32_t* out) {
  const int32_t p[11] = {BW_TILES, BW_DPES, BW_LANES, BW_MANT, BW_EXPW, BW_BLOCK,
                         BW_PSUM, BW_ACC, BW_DEPTH, BW_XWORDS, BW_YDEPTH};
  std::memcpy(out, p, sizeof p);
}

void* mvu_create(void) { return new Model(); }

void mvu_free(void* h) { delete M(h); }

uint64_t mvu_cycles(void* h) { return M(h)->cycles; }

// Hold rst for two cycles with every input idle (weights and buffers are kept).
void mvu_reset(void* h) {
  Model* m = M(h);
  Vmvu* t = m->top;
  t->start = t->stall = t->x_en = 0;
  t->w_en = 0;
  m->reset();
}

int64_t mvu_write_weights(void* h, int32_t te, int32_t addr, int32_t n_words, const int32_t* mant,
                          const int32_t* exp) {
  return write_weights(M(h), te, addr, n_words, mant, exp);
}

// T products of one matrix, in order: product i fills the input buffer with the
// x_words words of vector i (x_mant + i*x_words*LANES, x_exp + i*x_words*NBLK), runs
// at acc_exp[i] with n_pass passes of c words from weight word base over split
// K-groups, and writes its n_out outputs to y + i*n_out, its cycles start..done to
// cycles[i] and its stall cycles to stalls[i]. The stalls are seeded once, by seed.
// Returns the cycles of all products, or a negative error (the products before the
// failing one have run).
int64_t mvu_run(void* h, int32_t n_vec, const int32_t* x_mant, const int32_t* x_exp, int32_t x_words,
                const int32_t* acc_exp, int32_t base, int32_t n_pass, int32_t c, int32_t split, int32_t n_out,
                int64_t* y, int64_t* cycles, int64_t* stalls, uint32_t stall_pct, uint32_t seed) {
  Model* m = M(h);
  if (n_vec < 0 || x_words < 1 || x_words > BW_XWORDS || n_pass < 1 || c < 1 || base < 0 ||
      int64_t{base} + int64_t{n_pass} * c > BW_DEPTH || split < 1 || kTiles % split || n_out < 1 ||
      n_out > BW_YDEPTH || int64_t{n_pass} * (kTiles / split) * kDpes < n_out || stall_pct > 99)
    return MVU_ARGS;
  m->rng = seed ? seed : 1;
  int64_t total = 0;
  for (int32_t i = 0; i < n_vec; ++i) {
    const int64_t rc = run_one(m, x_mant + int64_t{i} * x_words * kLanes, x_exp + int64_t{i} * x_words * kNblk,
                               x_words, acc_exp[i], base, n_pass, c, split, n_out, y + int64_t{i} * n_out,
                               stalls + i, stall_pct);
    cycles[i] = rc;
    if (rc < 0) return rc;
    total += rc;
  }
  return total;
}

}  // extern "C"
#pragma GCC visibility pop
