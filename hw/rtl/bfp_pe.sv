// One processing element of the weight-stationary array.
//
// It holds one weight mantissa, passes the input mantissa on to the right and
// adds its product to the block's integer partial sum passing down. Only integer
// arithmetic here: the shared exponents are applied once per block, in
// bfp_combine, which is what makes block floating point cheap in hardware.
module bfp_pe #(
    parameter int MANT = 8,
    parameter int PSUM = 20  // >= 2*MANT; chosen by hw/config.py so a block sum cannot overflow
) (
    input  logic                   clk,
    input  logic                   en,
    input  logic                   w_load,
    input  logic signed [MANT-1:0] w_in,
    input  logic signed [MANT-1:0] x_in,
    input  logic signed [PSUM-1:0] psum_in,
    output logic signed [MANT-1:0] x_out,
    output logic signed [PSUM-1:0] psum_out
);
  // The weight is kept sign-extended to PSUM bits (the upper flops all copy its sign
  // bit; synthesis merges such duplicates). Then the multiply-add is plain PSUM-bit
  // modular arithmetic: a block sum fits in PSUM bits, so its low PSUM bits are the
  // exact two's complement result, and Verilator emits one multiply and one add per
  // PE instead of re-extending both signed operands every cycle.
  logic [PSUM-1:0] w;

  // Weights load only when the array is idle; `en` (the pipeline's advance) does
  // not gate them.
  always_ff @(posedge clk) if (w_load) w <= PSUM'(w_in);

  always_ff @(posedge clk) begin
    if (en) begin
      x_out <= x_in;
      psum_out <= psum_in + w * PSUM'(x_in);
    end
  end
endmodule
