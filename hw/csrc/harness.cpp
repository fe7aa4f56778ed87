// The Verilated tile model behind a small C ABI, loaded by hw/sim.py with ctypes.
//
// Whole operations (load a weight tile, run a tile to done, or a whole sequence of
// tiles with bw_run_tiles) loop over clock cycles here in C++: crossing into Python
// once per tile, or once per matrix product, instead of once per signal per cycle is
// what makes the simulation fast enough to serve from. poke/peek/tick are for
// debugging. The parameters come from the build's generated "bw_params.h".
#include <cstdint>
#include <cstring>
#include <string>

#include "Vbfp_tile.h"
#include "bw_model.h"
#include "bw_params.h"

namespace {

constexpr int kRows = BW_ROWS, kCols = BW_COLS, kBlock = BW_BLOCK, kNblk = BW_ROWS / BW_BLOCK;
using bw::mask;
using bw::sext;
using Model = bw::Model<Vbfp_tile>;
constexpr uint64_t kMantMask = mask(BW_MANT), kExpMask = mask(BW_EXPW), kAccExpMask = mask(BW_EXPW + 1);

Model* M(void* h) { return static_cast<Model*>(h); }

enum { BW_TIMEOUT = -1, BW_PROTOCOL = -2, BW_BUSY = -3 };

// Load a weight tile: w_mant[ROWS*COLS] row-major, w_exp[NBLK*COLS]. Returns cycles.
int64_t load_weights(Model* m, const int32_t* w_mant, const int32_t* w_exp) {
  Vbfp_tile* t = m->top;
  const uint64_t c0 = m->cycles;
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kCols; ++c) {
      t->w_mant[c] = static_cast<uint64_t>(w_mant[r * kCols + c]) & kMantMask;
      t->w_exp[c] = static_cast<uint64_t>(w_exp[(r / kBlock) * kCols + c]) & kExpMask;
    }
    t->w_valid = 1;
    m->settle();
    if (!t->w_ready) {
      t->w_valid = 0;
      return BW_BUSY;
    }
    m->rise();
  }
  t->w_valid = 0;
  m->settle();
  return static_cast<int64_t>(m->cycles - c0);
}

// Run one tile of n vectors: x_mant[n*ROWS], x_exp[n*NBLK]; results to y[n*COLS]
// (sign-extended accumulators). stall_pct in 0..99 drops x_valid and y_ready at
// random (seeded). Returns the cycles from start to done, or a negative error.
int64_t run_tile(Model* m, const int32_t* x_mant, const int32_t* x_exp, int32_t n, int32_t acc_exp, int64_t* y,
                 uint32_t stall_pct, uint32_t seed) {
  Vbfp_tile* t = m->top;
  if (n < 1) return BW_PROTOCOL;
  m->rng = seed ? seed : 1;
  t->start = 1;
  t->acc_exp = static_cast<uint64_t>(acc_exp) & kAccExpMask;
  m->settle();
  if (t->busy) {
    t->start = 0;
    return BW_BUSY;
  }
  const uint64_t c0 = m->cycles;
  m->rise();
  t->start = 0;
  // Generous: every cycle may stall, on average 100/(100-pct) times.
  const uint64_t limit = 64ULL * (n + kRows + kNblk + kCols + 2) * 100 / (100 - (stall_pct % 100));
  int32_t sent = 0, got = 0;
  for (;;) {
    const bool xv = sent < n && !m->stall(stall_pct);
    t->x_valid = xv;
    if (xv) {
      for (int r = 0; r < kRows; ++r) t->x_mant[r] = static_cast<uint64_t>(x_mant[sent * kRows + r]) & kMantMask;
      for (int b = 0; b < kNblk; ++b) t->x_exp[b] = static_cast<uint64_t>(x_exp[sent * kNblk + b]) & kExpMask;
      t->x_last = sent == n - 1;
    }
    t->y_ready = !m->stall(stall_pct);
    m->settle();
    const bool x_fire = xv && t->x_ready;
    if (t->y_valid && t->y_ready) {
      if (got >= n || t->y_last != (got == n - 1)) return BW_PROTOCOL;
      for (int c = 0; c < kCols; ++c) y[got * kCols + c] = sext(t->y_acc[c], BW_ACC);
      ++got;
    }
    m->rise();
    sent += x_fire;
    if (t->done) break;
    if (m->cycles - c0 > limit) return BW_TIMEOUT;
  }
  t->x_valid = 0;
  t->x_last = 0;
  m->settle();
  return got == n ? static_cast<int64_t>(m->cycles - c0) : BW_PROTOCOL;
}

}  // namespace

// The model is compiled with hidden visibility (direct calls, no PLT); only the C ABI
// below is exported.
#pragma GCC visibility push(default)
extern "C" {

int bw_abi_version(void) { return 2; }

// The compiled parameters, for hw/sim.py to check against the config it expects.
void bw_params(int32_t* out) {
  const int32_t p[7] = {BW_ROWS, BW_COLS, BW_MANT, BW_EXPW, BW_BLOCK, BW_PSUM, BW_ACC};
  std::memcpy(out, p, sizeof p);
}

void* bw_create(void) { return new Model(); }

void bw_free(void* h) { delete M(h); }

uint64_t bw_cycles(void* h) { return M(h)->cycles; }

// Hold rst for two cycles with every input idle.
void bw_reset(void* h) {
  Model* m = M(h);
  Vbfp_tile* t = m->top;
  t->start = t->w_valid = t->x_valid = t->x_last = 0;
  t->y_ready = 1;
  m->reset();
}

int64_t bw_load_weights(void* h, const int32_t* w_mant, const int32_t* w_exp) {
  return load_weights(M(h), w_mant, w_exp);
}

int64_t bw_run_tile(void* h, const int32_t* x_mant, const int32_t* x_exp, int32_t n, int32_t acc_exp, int64_t* y,
                    uint32_t stall_pct, uint32_t seed) {
  return run_tile(M(h), x_mant, x_exp, n, acc_exp, y, stall_pct, seed);
}

// A sequence of tiles in one call: one crossing from Python for a whole product.
// Tile i of n_tiles, in order:
//   * if w_mant is not null, load weight tile i (w_mant + i*ROWS*COLS, w_exp + i*NBLK*COLS);
//     its cycles to load_cycles[i];
//   * run input tile x_index[i] (of n_x; x_index null: i) of n vectors, at
//     x_mant + x_index[i]*n*ROWS and x_exp + x_index[i]*n*NBLK, with acc_exp[i] and stall
//     seed seed + i; results to y + i*n*COLS, cycles start..done to tile_cycles[i].
// So it is bw_load_weights and bw_run_tile called n_tiles times. Returns the cycles of
// all tiles and loads, or a negative error: tile i's is then also in tile_cycles[i]
// (and load_cycles[i] if its load failed) and later tiles are not run.
int64_t bw_run_tiles(void* h, int32_t n_tiles, const int32_t* w_mant, const int32_t* w_exp, int64_t* load_cycles,
                     const int32_t* x_mant, const int32_t* x_exp, const int32_t* x_index, int32_t n_x, int32_t n,
                     const int32_t* acc_exp, int64_t* y, int64_t* tile_cycles, uint32_t stall_pct, uint32_t seed) {
  Model* m = M(h);
  int64_t total = 0;
  for (int32_t i = 0; i < n_tiles; ++i) {
    if (w_mant) {
      const int64_t rc = load_weights(m, w_mant + int64_t{i} * kRows * kCols, w_exp + int64_t{i} * kNblk * kCols);
      load_cycles[i] = rc;
      if (rc < 0) return tile_cycles[i] = rc;
      total += rc;
    }
    const int64_t j = x_index ? x_index[i] : i;
    const int64_t rc = j < 0 || j >= n_x ? BW_PROTOCOL
        : run_tile(m, x_mant + j * n * kRows, x_exp + j * n * kNblk, n, acc_exp[i], y + int64_t{i} * n * kCols,
                   stall_pct, seed + static_cast<uint32_t>(i));
    tile_cycles[i] = rc;
    if (rc < 0) return rc;
    total += rc;
  }
  return total;
}

// ---- debugging: any port by name (index for array ports); raw bits, zero-extended.
static bool port(Vbfp_tile* t, const std::string& name, int index, uint64_t* get, const uint64_t* set) {
#define BW_SCALAR(p, bits)                        \
  if (name == #p) {                               \
    if (index != 0) return false;                 \
    if (set) t->p = *set & mask(bits);            \
    if (get) *get = static_cast<uint64_t>(t->p);  \
    return true;                                  \
  }
#define BW_ARRAY(p, len, bits)                            \
  if (name == #p) {                                       \
    if (index < 0 || index >= (len)) return false;        \
    if (set) t->p[index] = *set & mask(bits);             \
    if (get) *get = static_cast<uint64_t>(t->p[index]);   \
    return true;                                          \
  }
  // Writes are masked to the port's width: Verilator assumes the bits above are zero.
  BW_SCALAR(clk, 1) BW_SCALAR(rst, 1) BW_SCALAR(start, 1) BW_SCALAR(acc_exp, BW_EXPW + 1)
  BW_SCALAR(busy, 1) BW_SCALAR(done, 1) BW_SCALAR(w_valid, 1) BW_SCALAR(w_ready, 1)
  BW_SCALAR(x_valid, 1) BW_SCALAR(x_ready, 1) BW_SCALAR(x_last, 1) BW_SCALAR(y_valid, 1)
  BW_SCALAR(y_ready, 1) BW_SCALAR(y_last, 1)
  BW_ARRAY(w_mant, kCols, BW_MANT) BW_ARRAY(w_exp, kCols, BW_EXPW) BW_ARRAY(x_mant, kRows, BW_MANT)
  BW_ARRAY(x_exp, kNblk, BW_EXPW) BW_ARRAY(y_acc, kCols, BW_ACC)
#undef BW_SCALAR
#undef BW_ARRAY
  return false;
}

int bw_poke(void* h, const char* name, int32_t index, uint64_t value) {
  return port(M(h)->top, name, index, nullptr, &value) ? 0 : -1;
}

int bw_peek(void* h, const char* name, int32_t index, uint64_t* value) {
  return port(M(h)->top, name, index, value, nullptr) ? 0 : -1;
}

void bw_eval(void* h) { M(h)->settle(); }

// n full clock cycles with the inputs as poked.
void bw_tick(void* h, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    M(h)->settle();
    M(h)->rise();
  }
  M(h)->settle();
}

}  // extern "C"
#pragma GCC visibility pop
