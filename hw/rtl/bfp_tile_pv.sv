// bfp_tile with every array port packed into one vector: the top module for
// pyverilator, which reads ports from the Verilated header and cannot handle
// unpacked array ports. Element i of a port is bits [i*W +: W]. Only the tests and
// traces use this; the C-ABI model is built from bfp_tile itself.
module bfp_tile_pv #(
    parameter int ROWS = 16,
    parameter int COLS = 16,
    parameter int MANT = 8,
    parameter int EXPW = 8,
    parameter int BLOCK = 16,
    parameter int PSUM = 20,
    parameter int ACC = 48
) (
    input  logic                           clk,
    input  logic                           rst,
    input  logic                           start,
    input  logic        [          EXPW:0] acc_exp,
    output logic                           busy,
    output logic                           done,
    input  logic                           w_valid,
    output logic                           w_ready,
    input  logic        [   COLS*MANT-1:0] w_mant,
    input  logic        [   COLS*EXPW-1:0] w_exp,
    input  logic                           x_valid,
    output logic                           x_ready,
    input  logic                           x_last,
    input  logic        [   ROWS*MANT-1:0] x_mant,
    input  logic        [(ROWS/BLOCK)*EXPW-1:0] x_exp,
    output logic                           y_valid,
    input  logic                           y_ready,
    output logic                           y_last,
    output logic        [    COLS*ACC-1:0] y_acc
);
  localparam int NBLK = ROWS / BLOCK;
  logic signed [MANT-1:0] w_mant_u[COLS], x_mant_u[ROWS];
  logic signed [EXPW-1:0] w_exp_u[COLS], x_exp_u[NBLK];
  logic signed [ACC-1:0] y_acc_u[COLS];

  for (genvar c = 0; c < COLS; c++) begin : g_cols
    assign w_mant_u[c] = w_mant[c*MANT+:MANT];
    assign w_exp_u[c] = w_exp[c*EXPW+:EXPW];
    assign y_acc[c*ACC+:ACC] = y_acc_u[c];
  end
  for (genvar r = 0; r < ROWS; r++) begin : g_rows
    assign x_mant_u[r] = x_mant[r*MANT+:MANT];
  end
  for (genvar b = 0; b < NBLK; b++) begin : g_blks
    assign x_exp_u[b] = x_exp[b*EXPW+:EXPW];
  end

  bfp_tile #(
      .ROWS (ROWS),
      .COLS (COLS),
      .MANT (MANT),
      .EXPW (EXPW),
      .BLOCK(BLOCK),
      .PSUM (PSUM),
      .ACC  (ACC)
  ) u_tile (
      .clk(clk),
      .rst(rst),
      .start(start),
      .acc_exp(acc_exp),
      .busy(busy),
      .done(done),
      .w_valid(w_valid),
      .w_ready(w_ready),
      .w_mant(w_mant_u),
      .w_exp(w_exp_u),
      .x_valid(x_valid),
      .x_ready(x_ready),
      .x_last(x_last),
      .x_mant(x_mant_u),
      .x_exp(x_exp_u),
      .y_valid(y_valid),
      .y_ready(y_ready),
      .y_last(y_last),
      .y_acc(y_acc_u)
  );
endmodule
