// The exact arithmetic of one block step (combinational), as hw/golden.py specifies:
//
//   aligned = shift >= 0 ? sat(sum << shift)           (saturate to ACC bits)
//                        : round_half_even(sum / 2**-shift)
//   acc_out = sat(acc_in + aligned)
//
// Right shifts clamp at ACC-1: a block sum has at most ACC-1 bits (PSUM < ACC,
// checked by the config), so any larger shift rounds to 0 just the same.
// Everything stays within ACC+1 <= 64 bits, which keeps Verilator on native words.
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

  logic signed [ACC-1:0] s, shl, q, aligned, right_val, left_val;
  logic [SHW-1:0] mag;
  logic big, right, fits, up;
  logic [AW-1:0] amt;
  logic [ACC-1:0] below, half;
  logic signed [ACC:0] total;

  assign s = ACC'(sum);
  assign right = shift[SHW-1];
  assign mag = right ? -shift : shift;
  assign big = 32'(mag) > ACC - 1;
  assign amt = big ? AW'(ACC - 1) : AW'(mag);

  // Left: exact when shifting back returns the sum, else saturate by its sign.
  assign shl = s <<< amt;
  assign fits = !big && ((shl >>> amt) == s);
  assign left_val = (fits || sum == '0) ? shl : (sum[PSUM-1] ? MIN : MAX);

  // Right: floor quotient, then round up if the dropped bits exceed half an LSB,
  // or equal it and the quotient is odd (ties to even).
  assign q = s >>> amt;
  assign below = s & ((ACC'(1) << amt) - ACC'(1));
  assign half = ACC'(1) << (amt - AW'(1));
  assign up = (below > half) || (below == half && q[0]);
  assign right_val = q + ACC'(up);

  assign aligned = right ? right_val : left_val;

  assign total = (ACC + 1)'(acc_in) + (ACC + 1)'(aligned);
  assign acc_out = (total[ACC] != total[ACC-1]) ? (total[ACC] ? MIN : MAX) : total[ACC-1:0];
endmodule
