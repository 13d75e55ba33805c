// Behavioural models of the Xilinx LUT and CARRY4 primitives that rtlgen's latency-mode cores instantiate
// (ip_cores/bit_heap.py: one LUTn per counter output, CARRY4 chains in the ternary adders). Vivado and Yosys
// have their own; Verilator and the other simulators get these. INIT bit v is the output when the inputs, I0 the least significant, spell v.
// Not part of the IP: only the simulation harnesses compile this file.
/* verilator lint_off DECLFILENAME */
module LUT1 #(parameter [1:0] INIT = 2'h0) (output O, input I0);
  assign O = INIT[I0];
endmodule
module LUT2 #(parameter [3:0] INIT = 4'h0) (output O, input I0, input I1);
  assign O = INIT[{I1, I0}];
endmodule
module LUT3 #(parameter [7:0] INIT = 8'h0) (output O, input I0, input I1, input I2);
  assign O = INIT[{I2, I1, I0}];
endmodule
module LUT4 #(parameter [15:0] INIT = 16'h0) (output O, input I0, input I1, input I2, input I3);
  assign O = INIT[{I3, I2, I1, I0}];
endmodule
module LUT5 #(parameter [31:0] INIT = 32'h0) (output O, input I0, input I1, input I2, input I3, input I4);
  assign O = INIT[{I4, I3, I2, I1, I0}];
endmodule
module LUT6 #(parameter [63:0] INIT = 64'h0) (output O, input I0, input I1, input I2, input I3, input I4, input I5);
  assign O = INIT[{I5, I4, I3, I2, I1, I0}];
endmodule
module CARRY4 (output [3:0] CO, output [3:0] O, input CI, input CYINIT, input [3:0] DI, input [3:0] S);
  wire c0 = CI | CYINIT;
  wire c1 = S[0] ? c0 : DI[0];
  wire c2 = S[1] ? c1 : DI[1];
  wire c3 = S[2] ? c2 : DI[2];
  assign CO = {S[3] ? c3 : DI[3], c3, c2, c1};
  assign O = S ^ {c3, c2, c1, c0};
endmodule
/* verilator lint_on DECLFILENAME */
