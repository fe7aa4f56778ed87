// The tile controller around the systolic array: the top module of the C-ABI model.
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

  logic advance, x_fire, y_fire, got_last;
  logic [ROWS-1:0] w_row;  // one-hot: the row the next weight beat loads
  logic [ROWS-1:0] w_load;
  logic signed [EXPW:0] acc_exp_r;
  logic [1:0] pipe_out;

  // The pipeline moves unless a presented result is not taken.
  assign advance = !y_valid || y_ready;
  assign x_ready = busy && !got_last && advance;
  assign x_fire = x_valid && x_ready;
  assign y_fire = y_valid && y_ready;
  assign w_ready = !busy;

  always_ff @(posedge clk) begin
    if (rst) begin
      busy <= 1'b0;
      got_last <= 1'b0;
      done <= 1'b0;
      w_row <= ROWS'(1);
    end else begin
      done <= y_fire && y_last;
      if (start && !busy) begin
        busy <= 1'b1;
        got_last <= 1'b0;
        acc_exp_r <= acc_exp;
      end else if (y_fire && y_last) begin
        busy <= 1'b0;
      end
      if (x_fire && x_last) got_last <= 1'b1;
      if (w_valid && w_ready) w_row <= (w_row << 1) | ROWS'(w_row[ROWS-1]);  // rotate
    end
  end

  // A one-hot row pointer needs no decoder: the load enables are one AND, which also
  // keeps ROWS comparisons out of every simulated evaluation.
  assign w_load = w_row & {ROWS{w_valid && w_ready}};

  // Input skew: row r enters at its vertical stage, r + (its block index). The
  // mantissas travel sign-extended to PSUM bits (see bfp_array). The skew stays out
  // of the array's process: row 0 takes its input undelayed, and the array's first
  // column vectorises only if every row's input comes from one array (x_left).
  logic [PSUM-1:0] x_left[ROWS];
  for (genvar r = 0; r < ROWS; r++) begin : g_skew
    bfp_delay #(
        .W(PSUM),
        .D(r + r / BLOCK)
    ) u_skew (
        .clk(clk),
        .rst(rst),
        .en(advance),
        .d(PSUM'(x_mant[r])),
        .q(x_left[r])
    );
  end

  bfp_array #(
      .ROWS (ROWS),
      .COLS (COLS),
      .MANT (MANT),
      .EXPW (EXPW),
      .BLOCK(BLOCK),
      .PSUM (PSUM),
      .ACC  (ACC)
  ) u_array (
      .clk(clk),
      .en(advance),
      .w_load(w_load),
      .w_mant(w_mant),
      .w_exp(w_exp),
      .acc_exp(acc_exp_r),
      .x_left(x_left),
      .x_exp(x_exp),
      .x_valid(x_fire),
      .y_acc(y_acc)
  );

  // Valid and last travel beside the data; reset clears them.
  bfp_delay #(
      .W(2),
      .D(LATENCY),
      .RESET(1'b1)
  ) u_valid (
      .clk(clk),
      .rst(rst),
      .en(advance),
      .d({x_fire, x_fire && x_last}),
      .q(pipe_out)
  );
  assign y_valid = pipe_out[1];
  assign y_last = pipe_out[0];
endmodule
