// The exact arithmetic of one block step (combinational), as hw/golden.py specifies:
//
//   aligned = shift >= 0 ? sat(sum << shift)           (saturate to ACC bits)
//                        : round_half_even(sum / 2**-shift)
//   acc_out = sat(acc_in + aligned)
//
// Right shifts clamp at ACC-1: a block sum has at most ACC-1 bits (PSUM < ACC,
// checked by the config), so any larger shift rounds to 0 just the same.
// Everything stays within ACC <= 63 bits, which keeps Verilator on native words.
// The formulation is chosen for few operations per cycle in simulation (one add
// rounds, the saturating add needs no wider sum); hw/golden.py is the reference.
module bfp_block_acc #(
    parameter int PSUM = 20,
    parameter int ACC = 48,
    parameter int SHW = 10
) (
    input  logic signed [PSUM-1:0] sum,
    input  logic signed [ SHW-1:0] shift,
    input  logic signed [ ACC-1:0] acc_in,
    output logic signed [ ACC-1:0] acc_out
);
  localparam int AW = $clog2(ACC);
  localparam logic signed [ACC-1:0] MAX = {1'b0, {(ACC - 1) {1'b1}}};
  localparam logic signed [ACC-1:0] MIN = {1'b1, {(ACC - 1) {1'b0}}};

  logic signed [ACC-1:0] s, shl, biased, aligned, right_val, left_val, total;
  logic [PSUM-1:0] ones;
  logic [SHW-1:0] mag;
  logic big, right, fits;
  logic [AW-1:0] amt;

  assign s = ACC'(sum);
  assign right = shift[SHW-1];
  assign mag = right ? -shift : shift;
  assign big = 32'(mag) > ACC - 1;
  assign amt = big ? AW'(ACC - 1) : AW'(mag);

  // Left: exact when the sum fits in ACC-1-amt magnitude bits (for a negative sum,
  // -sum-1 must: the most negative value fits), else saturate by its sign.
  assign shl = s <<< amt;
  assign ones = sum ^ {PSUM{sum[PSUM-1]}};  // sum, or -sum-1 when negative
  assign fits = !big && ACC'(ones) < (ACC'(1) << (AW'(ACC - 1) - amt));
  assign left_val = (fits || sum == '0) ? shl : (sum[PSUM-1] ? MIN : MAX);

  // Right, rounding half to even in one add: with q = floor(s / 2**amt),
  // floor((s + 2**(amt-1) - 1 + q[0]) / 2**amt) rounds up exactly when the dropped
  // bits exceed half an LSB, or equal it and q is odd. No overflow: |s| < 2**(PSUM-1)
  // <= 2**(ACC-2) and the bias is at most 2**(ACC-2). (amt >= 1 whenever right.)
  assign biased = s + $signed((ACC'(1) << (amt - AW'(1))) - ACC'(1) + ACC'(s[amt]));
  assign right_val = biased >>> amt;

  assign aligned = right ? right_val : left_val;

  // Saturating add: it overflows iff both operands have one sign and the sum the other.
  assign total = acc_in + aligned;
  assign acc_out = (acc_in[ACC-1] == aligned[ACC-1] && total[ACC-1] != acc_in[ACC-1])
      ? (acc_in[ACC-1] ? MIN : MAX) : total;
endmodule
