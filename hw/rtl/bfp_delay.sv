// A delay line of D registers that shift when `en` is high; D = 0 is a wire.
//
// Used for the valid/last pipeline (bfp_tile's datapath keeps its own delay lines,
// and its input skew is a ring). Data lines need no reset (what is in flight is
// marked by the valid pipeline); RESET = 1 clears the control lines, so a reset in
// the middle of a tile drops everything in flight.
//
// Two equivalent forms, picked for simulation speed: a line of at most 64 bits is
// one packed shift register (Verilator shifts it as one machine word); a longer one
// is a named register per stage (an unpacked array would give every non-blocking
// element write a shadow copy and a flag, and a wide packed shift costs more than
// moving the stages one by one).
module bfp_delay #(
    parameter int W = 1,
    parameter int D = 1,
    parameter bit RESET = 1'b0
) (
    input  logic         clk,
    input  logic         rst,
    input  logic         en,
    input  logic [W-1:0] d,
    output logic [W-1:0] q
);
  if (D == 0) begin : g_wire
    assign q = d;
    logic unused_ok;
    assign unused_ok = &{1'b0, clk, rst, en};
  end else if (D == 1) begin : g_one
    always_ff @(posedge clk) begin
      if (RESET && rst) q <= '0;
      else if (en) q <= d;
    end
  end else if (W * D <= 64) begin : g_packed
    logic [W*D-1:0] sr;  // stage i is sr[i*W +: W]
    always_ff @(posedge clk) begin
      if (RESET && rst) sr <= '0;
      else if (en) sr <= {sr[W*(D-1)-1:0], d};
    end
    assign q = sr[W*D-1-:W];
  end else begin : g_regs
    for (genvar i = 0; i < D; i++) begin : g_stage
      logic [W-1:0] in, r;
      if (i == 0) begin : g_head
        assign in = d;
      end else begin : g_body
        assign in = g_stage[i-1].r;
      end
      always_ff @(posedge clk) begin
        if (RESET && rst) r <= '0;
        else if (en) r <= in;
      end
    end
    assign q = g_stage[D-1].r;
  end
endmodule
