// The matrix-vector unit (Brainwave's MVU, Fowers et al., ISCA 2018): TILES tile
// engines, each of DPES dot-product engines of LANES multipliers, each tile engine
// with its own weight memory. The top module of the MVU's C-ABI model.
//
// Ports (all sampled on the rising edge of clk; rst is synchronous and clears only
// the control, so weights and buffers survive it):
//   * Weight write port: each tile engine te with w_en[te] writes word w_addr of its
//     memory: DPES rows of LANES mantissas (w_mant[te]) and their DPES x NBLK block
//     exponents (w_exp[te]). One word per tile engine per cycle, all at once; weights
//     are written once, at model load.
//   * Input vector buffer: x_en writes word x_addr (LANES mantissas, NBLK exponents);
//     the host fills it before start.
//   * A product: `start` while idle latches acc_exp, base, n_pass, c, split and m; then
//     the sequencer (mvu_seq) issues n_pass passes of c words, one a cycle unless
//     `stall`. done is high for one cycle when the last outputs are written.
//   * Output buffer read port: y_acc[o] is output y_addr + o (o < TILES*DPES) of the
//     last product, registered (one cycle after y_addr), while idle.
//
// Dataflow, for a product of an (M, K) matrix laid out by hw/mvu/layout.py: with
// `split` K-groups of PER = TILES/split tile engines, tile engine te = kg*PER + rg
// reads, at step j of pass p, its weight word base + p*c + j and input word kg*c + j.
// Each DPE d multiplies its LANES weights with the word's LANES inputs and sums each
// exponent block (BLOCK lanes) exactly in PSUM bits; block_acc aligns each block sum
// by 2**(w_exp + x_exp - acc_exp) and adds it, saturating, into the DPE's ACC-bit
// accumulator, blocks in K order (the accumulator restarts at a pass's first word).
// At a pass's last word the K-groups' accumulators of each output are added in group
// order, saturating, and written to output p*PER*DPES + rg*DPES + d (outputs >= m are
// dropped). Pipeline: issue (mvu_seq), read (the weight memories' and x buffer's
// registered reads), multiply (block sums and shift amounts), accumulate, group add
// and write: start to done is 1 + n_pass*c + 4 cycles (hw/mvu/cycles.py).
//
// The datapath is this module's clocked process p_datapath, its registers variables
// written with blocking assignments downstream stages first (each read before it is
// overwritten), and the arithmetic functions, not module instances: Verilator 5.006
// copies every unpacked array port of an inlined module on each evaluation
// (hw/README.md, Performance; hw/rtl/bfp_tile.sv does the same).
//
// The parameter defaults are hw.config's "tiny" preset (a default elaboration stays
// small); every build overrides them from its config with -G, and
// tests/hw/test_sv_params.py checks that they equal the preset's figures.
module mvu #(
    parameter int TILES = 2,
    parameter int DPES = 2,
    parameter int LANES = 4,
    parameter int MANT = 8,
    parameter int EXPW = 8,
    parameter int BLOCK = 4,
    parameter int PSUM = 18,
    parameter int ACC = 32,
    parameter int DEPTH = 102,  // words per tile engine's weight memory
    parameter int XWORDS = 16,  // words of the input vector buffer
    parameter int YDEPTH = 64,  // outputs the output buffer holds
    localparam int NBLK = LANES / BLOCK,  // exponent blocks per word row
    localparam int DA = $clog2(DEPTH > 1 ? DEPTH : 2),  // weight address bits
    localparam int DN = $clog2(DEPTH + 1),  // a count of words or passes, 0..DEPTH
    localparam int XA = $clog2(XWORDS > 1 ? XWORDS : 2),
    localparam int SW = $clog2(TILES + 1),
    localparam int MW = $clog2(YDEPTH + 1)
) (
    input  logic                   clk,
    input  logic                   rst,
    // a product
    input  logic                   start,
    input  logic                   stall,
    input  logic signed [  EXPW:0] acc_exp,
    input  logic        [  DA-1:0] base,
    input  logic        [  DN-1:0] n_pass,
    input  logic        [  DN-1:0] c,
    input  logic        [  SW-1:0] split,
    input  logic        [  MW-1:0] m,
    output logic                   busy,
    output logic                   done,
    // the weight memories' write port
    input  logic        [TILES-1:0] w_en,
    input  logic        [  DA-1:0] w_addr,
    input  logic signed [MANT-1:0] w_mant [TILES][DPES*LANES],
    input  logic signed [EXPW-1:0] w_exp  [TILES][ DPES*NBLK],
    // the input vector buffer's write port
    input  logic                   x_en,
    input  logic        [  XA-1:0] x_addr,
    input  logic signed [MANT-1:0] x_mant [LANES],
    input  logic signed [EXPW-1:0] x_exp  [ NBLK],
    // the output buffer's read port
    input  logic        [  MW-1:0] y_addr,
    output logic signed [ ACC-1:0] y_acc  [TILES*DPES]
);
  localparam int DL = DPES * LANES;  // mantissas in a weight word
  localparam int DE = DPES * NBLK;  // exponents in a weight word
  localparam int YW = TILES * DPES;  // outputs of a pass (split 1), and of a read
  localparam int YI = $clog2(YDEPTH > 1 ? YDEPTH : 2);
  // w_exp + x_exp - acc_exp spans [-2**(EXPW+1)+1, 2**(EXPW+1)-2]: EXPW+2 bits.
  localparam int SHW = EXPW + 2;

  `include "bfp_block_acc.svh"

  logic go, i_v, r_v, m_v, m_first, a_v, a_endp;
  logic [DA-1:0] i_addr;
  logic [DN-1:0] i_j;
  mvu_seq #(
      .DA(DA),
      .DN(DN)
  ) u_seq (
      .clk(clk),
      .rst(rst),
      .start(start),
      .stall(stall),
      .base(base),
      .n_pass(n_pass),
      .c(c),
      .busy(busy),
      .done(done),
      .go(go),
      .i_v(i_v),
      .i_addr(i_addr),
      .i_j(i_j),
      .r_v(r_v),
      .m_v(m_v),
      .m_first(m_first),
      .a_v(a_v),
      .a_endp(a_endp)
  );

  // Each tile engine's weight memory: DEPTH words of DPES x LANES mantissas and
  // DPES x NBLK exponents, an inferable RAM (one write port here; its registered read
  // is p_datapath's read stage, at the sequencer's address). A whole word is one
  // array element, so the write is one assignment per tile engine.
  logic signed [MANT-1:0] w_mem_m[TILES][DEPTH][DL];
  logic signed [EXPW-1:0] w_mem_e[TILES][DEPTH][DE];
  for (genvar te = 0; te < TILES; te++) begin : g_te
    always_ff @(posedge clk) begin
      if (w_en[te]) begin
        w_mem_m[te][w_addr] <= w_mant[te];
        w_mem_e[te][w_addr] <= w_exp[te];
      end
    end
  end

  // The input vector buffer (a RAM read by every tile engine at its own address:
  // one copy per K-group in hardware).
  logic signed [MANT-1:0] x_mem_m[XWORDS][LANES];
  logic signed [EXPW-1:0] x_mem_e[XWORDS][NBLK];
  always_ff @(posedge clk) begin
    if (x_en) begin
      x_mem_m[x_addr] <= x_mant;
      x_mem_e[x_addr] <= x_exp;
    end
  end

  always_ff @(posedge clk) begin : p_datapath
    // settings latched at start
    logic signed [EXPW:0] acc_exp_r;
    int per;  // tile engines per K-group
    int x_off[TILES];  // tile engine te's first x word: kg * c
    int m_r;
    int y_pos;  // the output index of the current pass's first output
    // read stage
    logic signed [MANT-1:0] r_wm[TILES][DL];
    logic signed [EXPW-1:0] r_we[TILES][DE];
    logic signed [MANT-1:0] r_xm[TILES][LANES];
    logic signed [EXPW-1:0] r_xe[TILES][NBLK];
    // multiply stage: each DPE's block sums and their shifts, [te][d*NBLK + b]
    logic signed [PSUM-1:0] s_sum[TILES][DE];
    logic signed [SHW-1:0] s_sh[TILES][DE];
    // accumulate stage: DPE d of tile engine te's accumulator, [te*DPES + d]
    logic signed [ACC-1:0] acc[TILES*DPES];
    logic signed [ACC-1:0] a, total;
    int xa;
    // the output buffer, and the word its read port takes
    logic signed [ACC-1:0] y_mem[YDEPTH];
    logic signed [ACC-1:0] y_rd[YW];

    // The output buffer's read port (the host reads while idle). One non-blocking write
    // of the whole port: Verilator 5.006 refuses one per element in a loop it does not
    // unroll (BLKLOOPINIT, above 64 outputs).
    if (!busy) begin
      for (int o = 0; o < YW; o++) y_rd[o] = int'(y_addr) + o < YDEPTH ? y_mem[YI'(int'(y_addr)+o)] : '0;
      y_acc <= y_rd;
    end
    // Group add and write: output rg*DPES + d of the pass adds tile engine
    // kg*per + rg's accumulator d over the K-groups kg in order.
    if (a_v && a_endp) begin
      for (int o = 0; o < YW; o++) begin
        if (o / DPES < per && y_pos + o < m_r) begin
          total = acc[o];
          for (int kg = 1; kg < TILES; kg++) begin
            if (kg * per + o / DPES < TILES) total = sat_add(total, acc[(kg*per+o/DPES)*DPES+o%DPES]);
          end
          y_mem[YI'(y_pos+o)] = total;
        end
      end
      y_pos = y_pos + per * DPES;
    end
    // Accumulate: the word's blocks in K order (from 0 at a pass's first word).
    if (m_v) begin
      for (int te = 0; te < TILES; te++) begin
        for (int d = 0; d < DPES; d++) begin
          a = m_first ? '0 : acc[te*DPES+d];
          for (int b = 0; b < NBLK; b++) a = block_acc(s_sum[te][d*NBLK+b], s_sh[te][d*NBLK+b], a);
          acc[te*DPES+d] = a;
        end
      end
    end
    // Multiply: each block's exact integer dot product (PSUM-bit modular arithmetic on
    // sign-extended operands is exact, as in bfp_tile's pe_mac) and its shift.
    if (r_v) begin
      for (int te = 0; te < TILES; te++) begin
        for (int d = 0; d < DPES; d++) begin
          for (int b = 0; b < NBLK; b++) begin
            s_sum[te][d*NBLK+b] = '0;
            for (int l = b * BLOCK; l < (b + 1) * BLOCK; l++) begin
              s_sum[te][d*NBLK+b] = s_sum[te][d*NBLK+b] + PSUM'(r_wm[te][d*LANES+l]) * PSUM'(r_xm[te][l]);
            end
            s_sh[te][d*NBLK+b] = SHW'(r_we[te][d*NBLK+b]) + SHW'(r_xe[te][b]) - SHW'(acc_exp_r);
          end
        end
      end
    end
    // Read: every tile engine's weight word and its K-group's x word. Words past the
    // buffer are padding (their weights are zero) and read as zero.
    if (i_v) begin
      for (int te = 0; te < TILES; te++) begin
        r_wm[te] = w_mem_m[te][i_addr];
        r_we[te] = w_mem_e[te][i_addr];
        xa = x_off[te] + int'(i_j);
        if (xa < XWORDS) begin
          r_xm[te] = x_mem_m[XA'(xa)];
          r_xe[te] = x_mem_e[XA'(xa)];
        end else begin
          for (int l = 0; l < LANES; l++) r_xm[te][l] = '0;
          for (int b = 0; b < NBLK; b++) r_xe[te][b] = '0;
        end
      end
    end
    // Start: latch the product's settings. split divides TILES (the host checks).
    if (go) begin
      acc_exp_r = acc_exp;
      m_r = int'(m);
      y_pos = 0;
      for (int s = 1; s <= TILES; s++) begin
        if (TILES % s == 0 && int'(split) == s) begin
          per = TILES / s;
          for (int te = 0; te < TILES; te++) x_off[te] = te / (TILES / s) * int'(c);
        end
      end
    end
  end
endmodule
