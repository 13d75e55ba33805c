## Pynq-Z2 (xc7z020clg400-1) constraints for rtlgen's demo block design (vivado/pynq_z2_bd.tcl).
##
## The demo runs entirely on the Zynq PS clock (FCLK_CLK0) and talks to the core through the PS (DDR, AXI
## DMA), so it uses no PL pins: DDR and MIO pins belong to the PS and are placed by its configuration.
## The PL pins below are listed for users who extend the demo; uncomment what the extended design has.

## 125 MHz PL clock (from the Ethernet PHY)
# set_property -dict {PACKAGE_PIN H16 IOSTANDARD LVCMOS33} [get_ports sysclk]
# create_clock -name sys_clk_pin -period 8.000 [get_ports sysclk]

## LEDs LD0..LD3
# set_property -dict {PACKAGE_PIN R14 IOSTANDARD LVCMOS33} [get_ports {leds[0]}]
# set_property -dict {PACKAGE_PIN P14 IOSTANDARD LVCMOS33} [get_ports {leds[1]}]
# set_property -dict {PACKAGE_PIN N16 IOSTANDARD LVCMOS33} [get_ports {leds[2]}]
# set_property -dict {PACKAGE_PIN M14 IOSTANDARD LVCMOS33} [get_ports {leds[3]}]
