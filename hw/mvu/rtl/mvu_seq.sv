// The MVU's sequencer: start/done, the word counter that issues one weight word (and
// its x word) a cycle, and the valid/flag pipeline beside the datapath. Only scalar and
// packed ports: the datapath's arrays stay in mvu, where the top module's array ports
// are read without a copy (hw/README.md, Performance).
//
// A product is n_pass passes of c words. At the sampled `start` (not busy) it latches
// base, n_pass and c; then each cycle that `stall` is low it issues the next word
// (address base, base+1, ... base + n_pass*c - 1; step j = 0..c-1 within its pass).
// A stalled cycle issues nothing: a bubble flows down the pipeline. The issued word is
// read (r), multiplied (m), accumulated (a) and, at a pass's last word, its outputs are
// written (w); `done` rises with the write of the last pass and busy falls with it, so
// start to done takes 1 + n_pass*c + 4 cycles plus one per stall (hw/mvu/cycles.py).
module mvu_seq #(
    parameter int DA = 7,  // weight-memory address bits
    parameter int DN = 7   // bits of a count of words or passes (0..DEPTH)
) (
    input  logic          clk,
    input  logic          rst,
    input  logic          start,
    input  logic          stall,
    input  logic [DA-1:0] base,
    input  logic [DN-1:0] n_pass,
    input  logic [DN-1:0] c,
    output logic          busy,
    output logic          done,
    output logic          go,       // start accepted this cycle: the datapath latches its settings
    // the issue stage: the word the weight memories and x buffer read at the next edge
    output logic          i_v,
    output logic [DA-1:0] i_addr,
    output logic [DN-1:0] i_j,      // its step within the pass (the x word is kg*c + j)
    // the stages after it: a valid word in the read / multiply / accumulate registers
    output logic          r_v,
    output logic          m_v,
    output logic          m_first,  // the word in the multiply registers starts a pass
    output logic          a_v,
    output logic          a_endp    // the word just accumulated ends a pass: write its outputs
);
  logic issuing;  // words are left to issue
  logic [DN-1:0] j, p, c_r, n_pass_r;
  logic [DA-1:0] addr;
  logic i_first, i_endp, i_last, r_first, r_endp, r_last, m_endp, m_last, a_last;
  logic issue;

  assign go = start && !busy;
  assign issue = issuing && !stall;

  always_ff @(posedge clk) begin
    if (rst) begin
      busy <= 1'b0;
      done <= 1'b0;
      issuing <= 1'b0;
      {i_v, r_v, m_v, a_v} <= '0;
    end else begin
      done <= a_v && a_last;
      if (go) begin
        busy <= 1'b1;
        issuing <= 1'b1;
        addr <= base;
        j <= '0;
        p <= '0;
        c_r <= c;
        n_pass_r <= n_pass;
      end else if (a_v && a_last) begin
        busy <= 1'b0;
      end
      i_v <= issue;
      if (issue) begin
        i_addr <= addr;
        i_j <= j;
        i_first <= j == '0;
        i_endp <= j == c_r - 1'b1;
        i_last <= j == c_r - 1'b1 && p == n_pass_r - 1'b1;
        addr <= addr + 1'b1;
        if (j == c_r - 1'b1) begin
          j <= '0;
          p <= p + 1'b1;
          if (p == n_pass_r - 1'b1) issuing <= 1'b0;
        end else begin
          j <= j + 1'b1;
        end
      end
      // The flags travel with the word; a bubble's flags are never looked at.
      {r_v, r_first, r_endp, r_last} <= {i_v, i_first, i_endp, i_last};
      {m_v, m_first, m_endp, m_last} <= {r_v, r_first, r_endp, r_last};
      {a_v, a_endp, a_last} <= {m_v, m_endp, m_last};
    end
  end
endmodule
