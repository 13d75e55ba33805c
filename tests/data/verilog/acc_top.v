// Hand-written AXI-Stream test tops for the simulation harness (tests/test_harness.py).
//
// acc_core sums groups of K input words into one output word:
//   word_sum(x) = sum_i (i + 1) * byte_i(x)        (weighted, so a byte swap changes the result)
//   out[n]      = {n[15:0], (sum of word_sum over input words n*K .. n*K+K-1) mod 2^(OUT_W-16)}
// with tlast on every F-th output word (n % F == F - 1).
// Results go through a 2-deep output FIFO; s_axis_tready = FIFO not full (state only).
// Timing without back-pressure: input word j is accepted in cycle j, output n leaves in cycle (n+1)*K.
module acc_core #(
    parameter IN_W  = 200,
    parameter OUT_W = 72,
    parameter K     = 3,
    parameter F     = 4
) (
    input  wire             ap_clk,
    input  wire             ap_rst_n,
    input  wire [IN_W-1:0]  s_axis_tdata,
    input  wire             s_axis_tvalid,
    output wire             s_axis_tready,
    output wire [OUT_W-1:0] m_axis_tdata,
    output wire             m_axis_tvalid,
    input  wire             m_axis_tready,
    output wire             m_axis_tlast
);
    localparam NB = IN_W / 8;
    localparam SW = OUT_W - 16;

    reg [SW-1:0] word_sum;
    integer b;
    always @(*) begin
        word_sum = {SW{1'b0}};
        for (b = 0; b < NB; b = b + 1)
            word_sum = word_sum + (b + 1) * s_axis_tdata[b*8 +: 8];
    end

    reg [SW-1:0] acc;
    reg [31:0]   k_cnt;
    reg [31:0]   f_cnt;
    reg [15:0]   n_cnt;

    // 2-deep FIFO: q0 is the head; each entry holds {tlast, tdata}.
    reg [OUT_W:0] q0, q1;
    reg [1:0]     cnt;

    wire in_fire  = s_axis_tvalid && s_axis_tready;
    wire out_fire = m_axis_tvalid && m_axis_tready;
    wire push     = in_fire && (k_cnt == K - 1);
    wire [SW-1:0] total = acc + word_sum;
    wire [OUT_W:0] d = {(f_cnt == F - 1), n_cnt, total};

    assign s_axis_tready = (cnt != 2'd2);
    assign m_axis_tvalid = (cnt != 2'd0);
    assign m_axis_tdata  = q0[OUT_W-1:0];
    assign m_axis_tlast  = q0[OUT_W];

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            acc <= 0; k_cnt <= 0; f_cnt <= 0; n_cnt <= 0; cnt <= 0;
            q0 <= 0; q1 <= 0;
        end else begin
            if (in_fire) begin
                if (k_cnt == K - 1) begin
                    k_cnt <= 0;
                    acc <= 0;
                    n_cnt <= n_cnt + 1;
                    f_cnt <= (f_cnt == F - 1) ? 0 : f_cnt + 1;
                end else begin
                    k_cnt <= k_cnt + 1;
                    acc <= total;
                end
            end
            case ({push, out_fire})
                2'b10: begin
                    if (cnt == 0) q0 <= d; else q1 <= d;
                    cnt <= cnt + 1;
                end
                2'b01: begin
                    q0 <= q1;
                    cnt <= cnt - 1;
                end
                2'b11: begin
                    if (cnt == 1) q0 <= d;
                    else begin q0 <= q1; q1 <= d; end
                end
                default: ;
            endcase
        end
    end
endmodule

// Wide top: 200-bit input (VlWide<7>, 200 % 32 = 8), 72-bit output (VlWide<3>).
module acc_top_wide (
    input  wire         ap_clk,
    input  wire         ap_rst_n,
    input  wire [199:0] s_axis_tdata,
    input  wire         s_axis_tvalid,
    output wire         s_axis_tready,
    output wire [71:0]  m_axis_tdata,
    output wire         m_axis_tvalid,
    input  wire         m_axis_tready,
    output wire         m_axis_tlast
);
    acc_core #(.IN_W(200), .OUT_W(72), .K(3), .F(4)) core (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
        .m_axis_tlast(m_axis_tlast));
endmodule

// Narrow top in non-ANSI (Yosys/Amaranth) port style: 8-bit input (CData), 24-bit output (IData).
module acc_top_narrow(ap_clk, ap_rst_n, s_axis_tdata, s_axis_tvalid, s_axis_tready,
                      m_axis_tdata, m_axis_tvalid, m_axis_tready, m_axis_tlast);
  input ap_clk;
  wire ap_clk;
  input ap_rst_n;
  wire ap_rst_n;
  input [7:0] s_axis_tdata;
  wire [7:0] s_axis_tdata;
  input s_axis_tvalid;
  wire s_axis_tvalid;
  output s_axis_tready;
  wire s_axis_tready;
  output [23:0] m_axis_tdata;
  wire [23:0] m_axis_tdata;
  output m_axis_tvalid;
  wire m_axis_tvalid;
  input m_axis_tready;
  wire m_axis_tready;
  output m_axis_tlast;
  wire m_axis_tlast;
  acc_core #(.IN_W(8), .OUT_W(24), .K(2), .F(3)) core (
    .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
    .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
    .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
    .m_axis_tlast(m_axis_tlast));
endmodule

// Middle top: 48-bit input and 40-bit output, both QData (33..64 bits), K = 1 (one output per input).
module acc_top_mid (
    input  wire        ap_clk,
    input  wire        ap_rst_n,
    input  wire [47:0] s_axis_tdata,
    input  wire        s_axis_tvalid,
    output wire        s_axis_tready,
    output wire [39:0] m_axis_tdata,
    output wire        m_axis_tvalid,
    input  wire        m_axis_tready,
    output wire        m_axis_tlast
);
    acc_core #(.IN_W(48), .OUT_W(40), .K(1), .F(5)) core (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
        .m_axis_tlast(m_axis_tlast));
endmodule
