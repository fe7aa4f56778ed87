// Closes one exponent block of one column: a pipeline stage below the block's last
// PE. It holds the column's weight exponent for the block, receives the block's
// integer dot product from above and the input vector's block exponent from the
// left, and adds the scaled product to the column's accumulator (bfp_block_acc).
module bfp_combine #(
    parameter int EXPW = 8,
    parameter int PSUM = 20,
    parameter int ACC = 48
) (
    input  logic                   clk,
    input  logic                   en,
    input  logic                   w_load,
    input  logic signed [EXPW-1:0] w_exp_in,
    input  logic signed [  EXPW:0] acc_exp,
    input  logic signed [EXPW-1:0] x_exp_in,
    input  logic signed [PSUM-1:0] psum_in,
    input  logic signed [ ACC-1:0] acc_in,
    output logic signed [EXPW-1:0] x_exp_out,
    output logic signed [ ACC-1:0] acc_out
);
  // w_exp + x_exp - acc_exp spans [-2**(EXPW+1)+1, 2**(EXPW+1)-2]: EXPW+2 bits.
  localparam int SHW = EXPW + 2;
  logic [SHW-1:0] w_exp;  // sign-extended once, at load
  logic signed [SHW-1:0] shift;
  logic signed [ACC-1:0] acc_next;

  always_ff @(posedge clk) if (w_load) w_exp <= SHW'(w_exp_in);

  assign shift = $signed(w_exp + SHW'(x_exp_in) - SHW'(acc_exp));

  bfp_block_acc #(
      .PSUM(PSUM),
      .ACC (ACC),
      .SHW (SHW)
  ) u_acc (
      .sum(psum_in),
      .shift(shift),
      .acc_in(acc_in),
      .acc_out(acc_next)
  );

  always_ff @(posedge clk) begin
    if (en) begin
      x_exp_out <= x_exp_in;
      acc_out <= acc_next;
    end
  end
endmodule
