// A tiny AXI-Stream stage for tests/test_protocol_checker.py: each value of `fault` breaks one rule
// of the stream protocol checker (sim/benches/protocol.py), so one Verilator build serves every case.
//
// fault 0: correct. A one-word output register; s_axis_tready = register empty or being emptied.
//          TLAST on every 4th word (input words counted mod 4), payload passed through unchanged.
// fault 1: drops m_axis_tvalid for one cycle when a word has waited 2 cycles for m_axis_tready.
// fault 2: changes the payload (+1 a cycle) while the word waits for m_axis_tready.
// fault 3: m_axis_poison is high while word 2 of a frame is offered: the payload "is X" there.
//          The simulator (Verilator) is two-state, so the test reads the payload through a stand-in that shows X
//          while m_axis_poison is high (what a four-state simulator would show for an unset register).
// fault 4: TLAST on word 2 of each frame instead of word 3.
// fault 5: sends word 1 of the first frame twice (one extra word).
// fault 6: swallows word 1 of the first frame (one missing word).
// fault 7: correct, except that reset does not clear the TLAST word counter (a state that survives
//          a reset, for the mid-frame reset test).
module proto_dut (
    input  wire       ap_clk,
    input  wire       ap_rst_n,
    input  wire [2:0] fault,
    input  wire [7:0] s_axis_tdata,
    input  wire       s_axis_tvalid,
    output wire       s_axis_tready,
    output wire [7:0] m_axis_tdata,
    output wire       m_axis_tvalid,
    input  wire       m_axis_tready,
    output wire       m_axis_tlast,
    output wire       m_axis_poison
);
    reg [7:0] data;
    reg       valid, last;
    reg [1:0] pos;        // word index of the held word in its frame
    reg [1:0] icnt;       // input words mod 4
    reg [1:0] stall;      // cycles the held word has waited
    reg       once_done;  // fault 5/6 act on the first frame only

    wire dup_now  = fault == 3'd5 && !once_done && pos == 2'd1;
    wire out_fire = m_axis_tvalid && m_axis_tready;
    wire drop_now = fault == 3'd6 && !once_done && icnt == 2'd1;

    assign m_axis_tvalid = valid && !(fault == 3'd1 && stall == 2'd2);
    assign s_axis_tready = !valid || (out_fire && !dup_now);
    assign m_axis_tdata  = data;
    assign m_axis_tlast  = last;
    assign m_axis_poison = fault == 3'd3 && valid && pos == 2'd2;

    wire in_fire = s_axis_tvalid && s_axis_tready;

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            valid <= 1'b0; data <= 8'd0; last <= 1'b0; pos <= 2'd0; stall <= 2'd0; once_done <= 1'b0;
            if (fault != 3'd7) icnt <= 2'd0;
        end else begin
            if (valid && !m_axis_tready)
                stall <= (stall == 2'd3) ? stall : stall + 2'd1;
            else
                stall <= 2'd0;
            if (fault == 3'd2 && valid && !m_axis_tready)
                data <= data + 8'd1;

            if (out_fire && dup_now) begin
                once_done <= 1'b1;          // the same word goes out once more
            end else if (in_fire) begin
                icnt <= icnt + 2'd1;
                if (drop_now) begin
                    once_done <= 1'b1;      // accepted, never sent
                    valid <= 1'b0;
                end else begin
                    data <= s_axis_tdata;
                    valid <= 1'b1;
                    pos <= icnt;
                    last <= (fault == 3'd4) ? (icnt == 2'd2) : (icnt == 2'd3);
                end
            end else if (out_fire) begin
                valid <= 1'b0;
            end
        end
    end
endmodule
