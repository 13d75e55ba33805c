## Arty A7-100T (xc7a100tcsg324-1) constraints for rtlgen's demo block design (vivado/arty_a7_100t_bd.tcl).
## Port names are those of the block design's wrapper: sys_clock, reset, usb_uart_rxd, usb_uart_txd.

## 100 MHz oscillator. The clocking wizard that it feeds constrains its own input clock (from the port's
## FREQ_HZ), so no create_clock here.
set_property -dict {PACKAGE_PIN E3 IOSTANDARD LVCMOS33} [get_ports sys_clock]

## RESET button (ck_rst, active low)
set_property -dict {PACKAGE_PIN C2 IOSTANDARD LVCMOS33} [get_ports reset]

## USB-UART: A9 carries data from the PC to the FPGA, D10 from the FPGA to the PC
set_property -dict {PACKAGE_PIN A9 IOSTANDARD LVCMOS33} [get_ports usb_uart_rxd]
set_property -dict {PACKAGE_PIN D10 IOSTANDARD LVCMOS33} [get_ports usb_uart_txd]

## Configuration bank voltage
set_property CFGBVS VCCO [current_design]
set_property CONFIG_VOLTAGE 3.3 [current_design]
