// A tile of the block-floating-point matrix product: the ROWS x COLS weight-stationary
// systolic array with its input skew, behind the handshake of bfp_ctrl. The top module
// of the C-ABI model.
//
// Protocol (all signals sampled on the rising edge of clk; rst is synchronous):
//   * Weights: while idle (w_ready), each w_valid beat loads one array row, rows
//     0, 1, ... ROWS-1 in order (the row counter wraps, and reset rewinds it).
//     w_exp carries the exponents of the beat's block; it is kept from the block's
//     last row. Weights stay until overwritten: they survive reset.
//   * A tile: `start` while idle latches acc_exp and raises busy. Then one input
//     vector per x_valid && x_ready beat (x_last marks the last), and one result
//     (all COLS accumulators) per y_valid && y_ready beat, in order, y_last on the
//     last. The cycle after the y_last beat, done is high for one cycle and busy is
//     low, so the next start can follow at once.
//   * Stalls: input bubbles (x_valid low) flow through the array; an output stall
//     (y_valid && !y_ready) freezes the whole pipeline.
// Latency, vector in to result out: ROWS + ROWS/BLOCK + COLS - 1 (hw/cycles.py).
// The accumulator of a result is acc * 2**acc_exp (hw/golden.py defines it exactly).
//
// The datapath: the systolic array, one combiner row closing each exponent block, the
// exponent skew and the output de-skew. It is this module's clocked process p_datapath
// rather than a module of its own, and the PE is the function pe_mac rather than a
// module instance, for simulation speed: Verilator 5.006 copies every unpacked array
// port of an inlined module on each evaluation (hw/README.md, Performance).
//
// Dataflow: PE(r, c) holds weight W[r][c]. Input mantissa x[r] enters row r from the
// left (the input skew delays row r by r + r/BLOCK cycles) and moves one column per
// cycle; the block's integer partial sum moves down one row per cycle. Below the last
// row of each block a combiner stage scales the block sum by 2**(w_exp + x_exp -
// acc_exp) into the column's accumulator (block_acc), which is handed down through a
// BLOCK-deep delay, matching the next block's PE rows, to the next block's combiner.
// So each column is a vertical pipeline of ROWS + ROWS/BLOCK stages. A block's
// exponent waits in a skew until its block sum reaches the combiner and then moves
// right along the combiner row like x; column c's result waits COLS-1-c cycles in
// the de-skew, so that one output beat carries a whole result vector.
//
// Every register of the datapath is a variable of p_datapath, written with blocking
// assignments in an order that reads each register before it is overwritten (the
// stages downstream first), and read by no other process; the outputs are
// copies of the last stages, assigned non-blocking. This is ordinary synthesizable RTL
// (a variable read before it is written infers a flop), chosen for simulation speed:
// each stage becomes straight-line C++ over plain arrays, which g++ vectorises across
// PEs. A non-blocking write to an array element costs Verilator 5.006 a shadow value
// and a flag, and a module instance per PE gives scalar code in an order g++ cannot
// vectorise (hw/README.md, Performance).
//
// Narrow values are kept sign-extended in wider registers (mantissas in PSUM bits,
// exponents in SHW bits): the upper flops copy the sign bit and synthesis merges such
// duplicates; the arithmetic is then plain modular arithmetic in one word per value.
module bfp_tile #(
    parameter int ROWS = 16,
    parameter int COLS = 16,
    parameter int MANT = 8,
    parameter int EXPW = 8,
    parameter int BLOCK = 16,
    parameter int PSUM = 20,
    parameter int ACC = 48
) (
    input  logic                   clk,
    input  logic                   rst,
    // tile control
    input  logic                   start,
    input  logic signed [  EXPW:0] acc_exp,
    output logic                   busy,
    output logic                   done,
    // weight load
    input  logic                   w_valid,
    output logic                   w_ready,
    input  logic signed [MANT-1:0] w_mant  [      COLS],
    input  logic signed [EXPW-1:0] w_exp   [      COLS],
    // input vectors
    input  logic                   x_valid,
    output logic                   x_ready,
    input  logic                   x_last,
    input  logic signed [MANT-1:0] x_mant  [      ROWS],
    input  logic signed [EXPW-1:0] x_exp   [ROWS/BLOCK],
    // results
    output logic                   y_valid,
    input  logic                   y_ready,
    output logic                   y_last,
    output logic signed [ ACC-1:0] y_acc   [      COLS]
);
  localparam int NBLK = ROWS / BLOCK;
  localparam int LATENCY = ROWS + NBLK + COLS - 1;

  logic advance, x_fire;
  logic [ROWS-1:0] w_load;
  logic signed [EXPW:0] acc_exp_r;
  bfp_ctrl #(
      .ROWS(ROWS),
      .LATENCY(LATENCY),
      .EXPW(EXPW)
  ) u_ctrl (
      .clk(clk),
      .rst(rst),
      .start(start),
      .acc_exp(acc_exp),
      .acc_exp_r(acc_exp_r),
      .busy(busy),
      .done(done),
      .w_valid(w_valid),
      .w_ready(w_ready),
      .w_load(w_load),
      .x_valid(x_valid),
      .x_ready(x_ready),
      .x_last(x_last),
      .x_fire(x_fire),
      .y_valid(y_valid),
      .y_ready(y_ready),
      .y_last(y_last),
      .advance(advance)
  );

  // Input skew: row r enters at its vertical stage, r + r/BLOCK cycles late. The
  // mantissas travel sign-extended to PSUM bits (see below). Row 0 takes its input
  // undelayed; the others read a ring of the last 2**SA input vectors, written at
  // x_ptr when the pipeline advances, row r at the entry r + r/BLOCK writes back:
  // the same as a shift register per row, but nothing moves, so simulating it costs
  // one vector's write and a read per row instead of a move per stage. The ring
  // stays out of the datapath's process: a store at a variable index there keeps
  // g++ from vectorising the PE grid, and the grid's first column vectorises only if
  // every row's input comes from one array (x_left).
  localparam int SKEW = ROWS - 1 + (ROWS - 1) / BLOCK;  // the longest delay
  localparam int SA = $clog2(SKEW + 1);  // ring index bits: 2**SA > SKEW entries
  logic [PSUM-1:0] x_ring[2**SA][ROWS];
  logic [SA-1:0] x_ptr;
  always_ff @(posedge clk) begin
    if (advance) begin
      for (int r = 0; r < ROWS; r++) x_ring[x_ptr][r] <= PSUM'(x_mant[r]);
    end
  end
  // Any start works; the reset keeps a four-state simulation out of X. (In the ring's
  // process, the reset costs the simulation 30 instructions per clock.)
  always_ff @(posedge clk) x_ptr <= rst ? '0 : x_ptr + SA'(advance);
  logic [PSUM-1:0] x_left[ROWS];
  assign x_left[0] = PSUM'(x_mant[0]);
  for (genvar r = 1; r < ROWS; r++) begin : g_skew
    assign x_left[r] = x_ring[x_ptr-SA'(r+r/BLOCK)][r];
  end

  // w_exp + x_exp - acc_exp spans [-2**(EXPW+1)+1, 2**(EXPW+1)-2]: EXPW+2 bits.
  localparam int SHW = EXPW + 2;
  // Delay lines, stored stage-major (stage k of every line together); line i has
  // depth(i) stages, and stage k exists for the lines with k < depth(i).
  localparam int ED = NBLK * (BLOCK + 1) - 1;  // exponent skew: block b waits (b+1)*(BLOCK+1)-1
  localparam int AD = BLOCK > COLS - 1 ? BLOCK : COLS - 1;  // accumulator delays, below

  // The processing element: PE(r, c)'s multiply-accumulate, psum_in + w * x. Its
  // operands come sign-extended to PSUM bits, so PSUM-bit modular arithmetic gives
  // exactly the signed result: the low PSUM bits of a product or sum do not depend on
  // the bits above them, and the exact signed sum of a block's products fits in PSUM
  // bits (2*MANT + log2(BLOCK)). Hence no sign extension per PE per cycle, and one
  // machine word per operand, which g++ vectorises across a row of PEs.
  function automatic logic [PSUM-1:0] pe_mac(input logic [PSUM-1:0] psum_in, input logic [PSUM-1:0] w,
                                             input logic [PSUM-1:0] x);
    return psum_in + w * x;
  endfunction

  // block_acc (and sat_add): the accumulate step, shared with the MVU.
  `include "bfp_block_acc.svh"

  always_ff @(posedge clk) begin : p_datapath
    logic [PSUM-1:0] w[ROWS][COLS];  // PE(r, c)'s weight
    logic [PSUM-1:0] x[ROWS][COLS];  // the x PE(r, c) multiplies, passed right next cycle
    logic [PSUM-1:0] psum[ROWS][COLS];  // PE(r, c)'s partial sum, passed down
    // Dimensions of NBLK are folded into the next one: a dimension of size 1 (one
    // block, the default) costs Verilator a bounds-check temporary per element write.
    logic [SHW-1:0] e_skew[ED*NBLK];  // stage k of block b's exponent skew: [k*NBLK + b]
    logic [SHW-1:0] w_e[NBLK*COLS];  // combiner (b, c)'s weight exponent: [b*COLS + c]
    logic [SHW-1:0] x_e[NBLK*COLS];  // combiner (b, c)'s input exponent, passed right
    logic e_valid[ED*NBLK];  // beside e_skew and x_e: the exponent is an accepted vector's
    logic x_ev[NBLK*COLS];
    logic signed [ACC-1:0] acc[NBLK*COLS];  // combiner (b, c)'s accumulator
    // Below combiner (b, c): the hand-off to the next block's combiner (BLOCK stages)
    // or, below the last block, the de-skew (COLS-1-c stages).
    logic signed [ACC-1:0] acc_dly[AD][NBLK*COLS];
    if (advance) begin
      // Block by block from the bottom: the delay below combiner b takes the
      // combiner's old output, then the combiner takes the old block sum and the old
      // hand-off from the block above (shifted only later in this loop).
      for (int b = NBLK - 1; b >= 0; b--) begin
        for (int k = AD - 1; k > 0; k--) begin
          for (int c = 0; c < COLS; c++) begin
            if (k < (b < NBLK - 1 ? BLOCK : COLS - 1 - c)) acc_dly[k][b*COLS+c] = acc_dly[k-1][b*COLS+c];
          end
        end
        for (int c = 0; c < COLS; c++) begin
          if (b < NBLK - 1 || c < COLS - 1) acc_dly[0][b*COLS+c] = acc[b*COLS+c];
        end
        for (int c = COLS - 1; c > 0; c--) x_e[b*COLS+c] = x_e[b*COLS+c-1];
        x_e[b*COLS] = e_skew[((b + 1) * (BLOCK + 1) - 2)*NBLK+b];
        for (int c = COLS - 1; c > 0; c--) x_ev[b*COLS+c] = x_ev[b*COLS+c-1];
        x_ev[b*COLS] = e_valid[((b + 1) * (BLOCK + 1) - 2)*NBLK+b];
        // A combiner holding a bubble keeps its accumulator (a clock enable): that
        // output is never taken. In simulation this skips the combiners' arithmetic,
        // their largest cost, in the cycles a tile fills and drains the array.
        for (int c = 0; c < COLS; c++) begin
          if (x_ev[b*COLS+c]) begin
            if (b == 0) begin
              acc[c] = block_acc(psum[BLOCK-1][c], w_e[c] + x_e[c] - SHW'(acc_exp_r), '0);
            end else begin
              acc[b*COLS+c] = block_acc(psum[(b+1)*BLOCK-1][c], w_e[b*COLS+c] + x_e[b*COLS+c] - SHW'(acc_exp_r),
                                        acc_dly[BLOCK-1][(b-1)*COLS+c]);
            end
          end
        end
      end
      for (int k = ED - 1; k > 0; k--) begin
        for (int b = 0; b < NBLK; b++) begin
          if (k < (b + 1) * (BLOCK + 1) - 1) begin
            e_skew[k*NBLK+b] = e_skew[(k-1)*NBLK+b];
            e_valid[k*NBLK+b] = e_valid[(k-1)*NBLK+b];
          end
        end
      end
      for (int b = 0; b < NBLK; b++) begin
        e_skew[b] = SHW'(x_exp[b]);
        e_valid[b] = x_fire;
      end
      // The PE grid. Each PE latches its left neighbour's x (row r's first, the skewed
      // input) and its pe_mac of that x with the partial sum from above, which starts
      // from zero at a block's first row. Only 32- or 64-bit words, whole rows at a
      // time, no element computed unlike its neighbours: what g++ needs to vectorise.
      for (int r = 0; r < ROWS; r++) begin
        for (int c = COLS - 1; c > 0; c--) x[r][c] = x[r][c-1];
        x[r][0] = x_left[r];
      end
      for (int r = ROWS - 1; r >= 0; r--) begin
        for (int c = 0; c < COLS; c++) begin
          psum[r][c] = pe_mac(r % BLOCK == 0 ? '0 : psum[r-1][c], w[r][c], x[r][c]);
        end
      end
      // The outputs copy the last stages (duplicate flops that synthesis merges).
      for (int c = 0; c < COLS - 1; c++) y_acc[c] <= acc_dly[COLS-2-c][(NBLK-1)*COLS+c];
      y_acc[COLS-1] <= acc[NBLK*COLS-1];
    end
    // Weights load a row at a time, whether or not the pipeline advances. (One test
    // while no row loads, rather than one per row: 20 instructions per simulated clock.)
    if (w_load != '0) begin
      for (int r = 0; r < ROWS; r++) begin
        if (w_load[r]) begin
          for (int c = 0; c < COLS; c++) w[r][c] = PSUM'(w_mant[c]);
          if (r % BLOCK == BLOCK - 1) begin
            for (int c = 0; c < COLS; c++) w_e[(r/BLOCK)*COLS+c] = SHW'(w_exp[c]);
          end
        end
      end
    end
  end
endmodule
