// The tile controller: the handshake of bfp_tile (its header states the protocol),
// the weight-row pointer, and the valid/last pipeline beside the datapath. Only
// scalar and packed ports: the datapath's arrays stay in bfp_tile, where the top
// module's array ports are read without a copy (hw/README.md, Performance).
module bfp_ctrl #(
    parameter int ROWS = 16,
    parameter int LATENCY = 32,
    parameter int EXPW = 8
) (
    input  logic                 clk,
    input  logic                 rst,
    input  logic                 start,
    input  logic signed [EXPW:0] acc_exp,
    output logic signed [EXPW:0] acc_exp_r,  // acc_exp latched at start
    output logic                 busy,
    output logic                 done,
    input  logic                 w_valid,
    output logic                 w_ready,
    output logic      [ROWS-1:0] w_load,     // one-hot: the array row loading this cycle
    input  logic                 x_valid,
    output logic                 x_ready,
    input  logic                 x_last,
    output logic                 x_fire,     // an input vector is accepted this cycle
    output logic                 y_valid,
    input  logic                 y_ready,
    output logic                 y_last,
    output logic                 advance     // the pipeline moves this cycle
);
  logic y_fire, got_last;
  logic [ROWS-1:0] w_row;  // one-hot: the row the next weight beat loads
  logic [1:0] pipe_out;

  // The pipeline moves unless a presented result is not taken.
  assign advance = !y_valid || y_ready;
  assign x_ready = busy && !got_last && advance;
  assign x_fire = x_valid && x_ready;
  assign y_fire = y_valid && y_ready;
  assign w_ready = !busy;

  always_ff @(posedge clk) begin
    if (rst) begin
      busy <= 1'b0;
      got_last <= 1'b0;
      done <= 1'b0;
      w_row <= ROWS'(1);
    end else begin
      done <= y_fire && y_last;
      if (start && !busy) begin
        busy <= 1'b1;
        got_last <= 1'b0;
        acc_exp_r <= acc_exp;
      end else if (y_fire && y_last) begin
        busy <= 1'b0;
      end
      if (x_fire && x_last) got_last <= 1'b1;
      if (w_valid && w_ready) w_row <= (w_row << 1) | ROWS'(w_row[ROWS-1]);  // rotate
    end
  end

  // A one-hot row pointer needs no decoder: the load enables are one AND, which also
  // keeps ROWS comparisons out of every simulated evaluation.
  assign w_load = w_row & {ROWS{w_valid && w_ready}};

  // Valid and last travel beside the data; reset clears them.
  bfp_delay #(
      .W(2),
      .D(LATENCY),
      .RESET(1'b1)
  ) u_valid (
      .clk(clk),
      .rst(rst),
      .en(advance),
      .d({x_fire, x_fire && x_last}),
      .q(pipe_out)
  );
  assign y_valid = pipe_out[1];
  assign y_last = pipe_out[0];
endmodule
