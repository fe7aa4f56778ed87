// The ROWS x COLS weight-stationary systolic array, with one combiner row closing
// each exponent block.
//
// Dataflow: PE(r, c) holds weight W[r][c]. Input mantissa x[r] enters row r from
// the left and moves one column per cycle; the block's integer partial sum moves
// down one row per cycle. Below the last row of each block a combiner stage scales
// the block sum by 2**(w_exp + x_exp - acc_exp) into the column's accumulator,
// which is handed down (through a BLOCK-deep delay, matching the next block's PE
// rows) to the next block's combiner. So each column is a vertical pipeline of
// ROWS + ROWS/BLOCK stages; the caller skews the inputs to match (bfp_tile).
module bfp_array #(
    parameter int ROWS = 16,
    parameter int COLS = 16,
    parameter int MANT = 8,
    parameter int EXPW = 8,
    parameter int BLOCK = 16,
    parameter int PSUM = 20,
    parameter int ACC = 48
) (
    input  logic                   clk,
    input  logic                   en,
    input  logic [       ROWS-1:0] w_load,                 // one-hot: the row being loaded
    input  logic signed [MANT-1:0] w_mant      [    COLS],
    input  logic signed [EXPW-1:0] w_exp       [    COLS],
    input  logic signed [  EXPW:0] acc_exp,
    input  logic signed [MANT-1:0] x_left      [    ROWS],  // row r delayed by its stage
    input  logic signed [EXPW-1:0] x_exp_left  [ROWS/BLOCK],
    output logic signed [ ACC-1:0] acc_bottom  [    COLS]
);
  localparam int NBLK = ROWS / BLOCK;

  // Neighbours are wired by name (g_row[r].g_pe[c].x_out) rather than through 2-D
  // arrays: an instance output driving an array element costs Verilator a copy per
  // signal per cycle, and doubles the generated C++.
  for (genvar r = 0; r < ROWS; r++) begin : g_row
    for (genvar c = 0; c < COLS; c++) begin : g_pe
      logic signed [MANT-1:0] x_in, x_out;
      logic signed [PSUM-1:0] psum_in, psum_out;
      if (c == 0) begin : g_left
        assign x_in = x_left[r];
      end else begin : g_inner
        assign x_in = g_row[r].g_pe[c-1].x_out;
      end
      // Each block's partial sum starts from zero at the block's first row.
      if (r % BLOCK == 0) begin : g_top
        assign psum_in = '0;
      end else begin : g_chain
        assign psum_in = g_row[r-1].g_pe[c].psum_out;
      end
      bfp_pe #(
          .MANT(MANT),
          .PSUM(PSUM)
      ) u_pe (
          .clk(clk),
          .en(en),
          .w_load(w_load[r]),
          .w_in(w_mant[c]),
          .x_in(x_in),
          .psum_in(psum_in),
          .x_out(x_out),
          .psum_out(psum_out)
      );
    end
    logic signed [MANT-1:0] unused_x_out;  // the last column's x leaves the array
    assign unused_x_out = g_row[r].g_pe[COLS-1].x_out;
  end

  for (genvar b = 0; b < NBLK; b++) begin : g_blk
    localparam int LAST = (b + 1) * BLOCK - 1;  // the block's last PE row
    for (genvar c = 0; c < COLS; c++) begin : g_comb
      logic signed [EXPW-1:0] x_exp_in, x_exp_out;
      logic signed [ACC-1:0] acc_in, acc_out;
      if (c == 0) begin : g_left
        assign x_exp_in = x_exp_left[b];
      end else begin : g_inner
        assign x_exp_in = g_blk[b].g_comb[c-1].x_exp_out;
      end
      if (b == 0) begin : g_top
        assign acc_in = '0;
      end else begin : g_handoff
        bfp_delay #(
            .W(ACC),
            .D(BLOCK)
        ) u_handoff (
            .clk(clk),
            .rst(1'b0),
            .en(en),
            .d(g_blk[b-1].g_comb[c].acc_out),
            .q(acc_in)
        );
      end
      bfp_combine #(
          .EXPW(EXPW),
          .PSUM(PSUM),
          .ACC (ACC)
      ) u_comb (
          .clk(clk),
          .en(en),
          .w_load(w_load[LAST]),
          .w_exp_in(w_exp[c]),
          .acc_exp(acc_exp),
          .x_exp_in(x_exp_in),
          .psum_in(g_row[LAST].g_pe[c].psum_out),
          .acc_in(acc_in),
          .x_exp_out(x_exp_out),
          .acc_out(acc_out)
      );
    end
    logic signed [EXPW-1:0] unused_exp_out;
    assign unused_exp_out = g_blk[b].g_comb[COLS-1].x_exp_out;
  end

  for (genvar c = 0; c < COLS; c++) begin : g_out
    assign acc_bottom[c] = g_blk[NBLK-1].g_comb[c].acc_out;
  end
endmodule
