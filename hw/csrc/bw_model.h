// What the C-ABI harnesses of both matrix engines share (hw/csrc/harness.cpp, the
// systolic array; hw/mvu/csrc/harness.cpp, the matrix-vector unit): a Verilated top
// module with its clock, a cycle counter and the seeded stall source.
#pragma once

#include <cstdint>

#include "verilated.h"

namespace bw {

constexpr uint64_t mask(int bits) { return bits >= 64 ? ~0ULL : (1ULL << bits) - 1; }

inline int64_t sext(uint64_t v, int bits) {
  const int s = 64 - bits;
  return static_cast<int64_t>(v << s) >> s;
}

template <class Top>
struct Model {
  VerilatedContext ctx;
  Top* top;
  uint64_t cycles = 0;
  uint32_t rng = 1;
  Model() : top(new Top{&ctx, "top"}) {
    top->clk = 0;
    top->eval();
  }
  ~Model() {
    top->final();
    delete top;
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  // Inputs are set with clk low; eval settles the combinational outputs; the rising
  // edge follows. The falling edge's eval is folded into the next settle.
  void settle() { top->eval(); }
  void rise() {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    ++cycles;
  }
  // Hold rst for two cycles (the caller idles the other inputs first).
  void reset() {
    top->rst = 1;
    for (int i = 0; i < 2; ++i) {
      settle();
      rise();
    }
    top->rst = 0;
    settle();
  }
  // xorshift32: a cheap, reproducible source of stalls.
  bool stall(uint32_t pct) {
    if (pct == 0) return false;
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng % 100 < pct;
  }
};

}  // namespace bw
