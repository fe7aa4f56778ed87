// The block-floating-point accumulate step both matrix engines share: included inside
// a module (bfp_tile, the systolic array; mvu, the matrix-vector unit) that defines
// ACC (accumulator bits), PSUM (block-sum bits) and SHW (shift-amount bits). Functions
// rather than a module, so that Verilator inlines them into the caller's clocked
// process (hw/README.md, Performance). No include guard: each module includes it once.
  localparam int TOP = ACC - 1;  // the accumulator's sign bit: the largest useful shift
  localparam int AW = $clog2(ACC);  // a shift amount, 0..TOP
  localparam logic signed [ACC-1:0] MAX = {1'b0, {(ACC - 1) {1'b1}}};
  localparam logic signed [ACC-1:0] MIN = {1'b1, {(ACC - 1) {1'b0}}};

  // Saturating add: it overflows iff both operands have one sign and the sum the other.
  function automatic logic signed [ACC-1:0] sat_add(input logic signed [ACC-1:0] acc,
                                                    input logic signed [ACC-1:0] x);
    logic signed [ACC-1:0] total;
    total = acc + x;
    return (acc[ACC-1] == x[ACC-1] && total[ACC-1] != acc[ACC-1]) ? (acc[ACC-1] ? MIN : MAX) : total;
  endfunction

  // One block step of the exact arithmetic (hw/golden.py specifies it):
  //   aligned = shift >= 0 ? sat(sum << shift) : round_half_even(sum / 2**-shift)
  //   result  = sat(acc + aligned)
  // Right shifts clamp at ACC-1: a block sum has at most ACC-1 bits (PSUM < ACC,
  // checked by the config), so any larger shift rounds to 0 just the same. The
  // formulation is chosen for few operations (one add rounds; the saturating add
  // needs no wider sum).
  function automatic logic signed [ACC-1:0] block_acc(input logic signed [PSUM-1:0] sum,
                                                      input logic signed [SHW-1:0] shift,
                                                      input logic signed [ACC-1:0] acc);
    logic signed [ACC-1:0] s, aligned;
    logic [PSUM-1:0] ones;
    logic [SHW-1:0] mag;
    logic [AW-1:0] amt;
    logic big, fits;
    s = ACC'(sum);
    mag = shift[SHW-1] ? -shift : shift;
    big = 32'(mag) > TOP;
    amt = big ? AW'(TOP) : AW'(mag);
    if (shift[SHW-1]) begin
      // Right, rounding half to even in one add: with q = floor(s / 2**amt),
      // floor((s + 2**(amt-1) - 1 + q[0]) / 2**amt) rounds up exactly when the dropped
      // bits exceed half an LSB, or equal it and q is odd. No overflow: |s| <
      // 2**(PSUM-1) <= 2**(ACC-2) and the bias is at most 2**(ACC-2). (amt >= 1.)
      aligned = (s + $signed((ACC'(1) << (amt - AW'(1))) - ACC'(1) + ACC'(s[amt]))) >>> amt;
    end else begin
      // Left: exact when the sum fits in ACC-1-amt magnitude bits (for a negative sum,
      // -sum-1 must: the most negative value fits), else saturate by its sign.
      ones = sum ^ {PSUM{sum[PSUM-1]}};  // sum, or -sum-1 when negative
      fits = !big && ACC'(ones) < (ACC'(1) << (AW'(TOP) - amt));
      aligned = (fits || sum == '0) ? s <<< amt : (sum[PSUM-1] ? MIN : MAX);
    end
    return sat_add(acc, aligned);
  endfunction
