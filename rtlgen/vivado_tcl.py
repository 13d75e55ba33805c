"""Vivado Tcl written next to the IP: demo block designs for two boards and a package check.

    DIR/vivado/pynq_z2_bd.tcl      Zynq PS7 + AXI DMA (simple mode) + the core, on Pynq-Z2 (xc7z020clg400-1)
    DIR/vivado/arty_a7_100t_bd.tcl MicroBlaze + BRAM + AXI DMA + the core + UART, on Arty A7-100T (xc7a100tcsg324-1)
    DIR/vivado/check_ip.tcl        ipx::open_core + ipx::check_integrity + "is it in the IP catalog"
    DIR/vivado/constraints/*.xdc   board pins, copied from the repository's constraints/

The demos run end to end (`vivado -mode batch -source DIR/vivado/pynq_z2_bd.tcl`): project, block design,
validation, wrapper, bitstream, and the files software needs (.bit + .hwh for PYNQ, .xsa for Vitis); with
`-tclargs --bd-only` they stop after the block design is validated and saved.

Stream widths: the AXI DMA streams 8 to 1024 bits in powers of two, and an rtlgen core's TDATA is one of
those widths (`ip_cores.axis_top.axis_width`), so each DMA stream is exactly as wide as the core's TDATA and
no width converter sits in between: one DMA beat is one core word, a frame of W words is W beats. The DMA's
memory-mapped side is at least as wide (it may not be narrower than its stream). Only a core that is not
rtlgen's (any multiple of 8 bits) or wider than 1024 bits gets the widest DMA stream whose byte count divides
its own and an integer-ratio AXI4-Stream data width converter.

The core's `error` output (sticky after a damaged input frame) goes to a one-bit input of an AXI GPIO
(`error_gpio`, channel 1), which the processor reads.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ip_cores.axis_top import DMA_STREAM_WIDTHS
from rtlgen.ipxact import IpOptions

PYNQ_Z2_PART = "xc7z020clg400-1"
ARTY_A7_100T_PART = "xc7a100tcsg324-1"
BD_NAME = "rtlgen_demo"
CORE_CELL = "accel"
DMA_CELL = "axi_dma"
ERROR_GPIO_CELL = "error_gpio"

# Zynq PS7 settings of the Pynq-Z2, as in the board's PYNQ base design (DDR3 MT41J256M16 RE-125 on a 16-bit
# bus at 525 MHz, 50 MHz PS clock, UART0 on MIO 14..15, SD0, QSPI, Ethernet, USB). Set explicitly so the
# script needs no board files; Vivado derives the clock dividers from these.
PYNQ_Z2_PS7_PRESET = (
    ("PCW_PRESET_BANK0_VOLTAGE", "LVCMOS 3.3V"), ("PCW_PRESET_BANK1_VOLTAGE", "LVCMOS 1.8V"),
    ("PCW_PACKAGE_NAME", "clg400"), ("PCW_CRYSTAL_PERIPHERAL_FREQMHZ", "50"),
    ("PCW_APU_PERIPHERAL_FREQMHZ", "650"),
    ("PCW_UIPARAM_DDR_MEMORY_TYPE", "DDR 3"), ("PCW_UIPARAM_DDR_PARTNO", "MT41J256M16 RE-125"),
    ("PCW_UIPARAM_DDR_BUS_WIDTH", "16 Bit"), ("PCW_UIPARAM_DDR_FREQ_MHZ", "525"),
    ("PCW_UIPARAM_DDR_TRAIN_DATA_EYE", "1"), ("PCW_UIPARAM_DDR_TRAIN_READ_GATE", "1"),
    ("PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL", "1"),
    ("PCW_UIPARAM_DDR_BOARD_DELAY0", "0.223"), ("PCW_UIPARAM_DDR_BOARD_DELAY1", "0.212"),
    ("PCW_UIPARAM_DDR_BOARD_DELAY2", "0.085"), ("PCW_UIPARAM_DDR_BOARD_DELAY3", "0.092"),
    ("PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_0", "0.040"), ("PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_1", "0.058"),
    ("PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_2", "-0.009"), ("PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3", "-0.033"),
    ("PCW_UART0_PERIPHERAL_ENABLE", "1"), ("PCW_UART0_UART0_IO", "MIO 14 .. 15"),
    ("PCW_UART0_BAUD_RATE", "115200"),
    ("PCW_SD0_PERIPHERAL_ENABLE", "1"), ("PCW_SD0_SD0_IO", "MIO 40 .. 45"),
    ("PCW_SD0_GRP_CD_ENABLE", "1"), ("PCW_SD0_GRP_CD_IO", "MIO 47"),
    ("PCW_QSPI_PERIPHERAL_ENABLE", "1"), ("PCW_QSPI_QSPI_IO", "MIO 1 .. 6"),
    ("PCW_QSPI_GRP_SINGLE_SS_ENABLE", "1"), ("PCW_QSPI_GRP_FBCLK_ENABLE", "1"),
    ("PCW_QSPI_GRP_FBCLK_IO", "MIO 8"), ("PCW_SINGLE_QSPI_DATA_MODE", "x4"),
    ("PCW_ENET0_PERIPHERAL_ENABLE", "1"), ("PCW_ENET0_ENET0_IO", "MIO 16 .. 27"),
    ("PCW_ENET0_GRP_MDIO_ENABLE", "1"), ("PCW_ENET0_GRP_MDIO_IO", "MIO 52 .. 53"),
    ("PCW_ENET0_RESET_ENABLE", "1"), ("PCW_ENET0_RESET_IO", "MIO 9"),
    ("PCW_USB0_PERIPHERAL_ENABLE", "1"), ("PCW_USB0_USB0_IO", "MIO 28 .. 39"),
    ("PCW_USB0_RESET_ENABLE", "1"), ("PCW_USB0_RESET_IO", "MIO 46"),
    ("PCW_GPIO_MIO_GPIO_ENABLE", "1"),
)

MAX_DMA_STREAM_BYTES = DMA_STREAM_WIDTHS[-1] // 8  # 1024 bits, the widest AXI DMA stream
MIN_DMA_MM_BITS = 32  # the narrowest memory-mapped data width of the AXI DMA
PYNQ_Z2_HP_PORT_BITS = 64  # the Zynq-7000 S_AXI_HP ports: what the DMA's memory side moves a cycle at most


@dataclass(frozen=True)
class StreamLink:
    """One direction between the DMA and the core: TDATA bytes on each side."""

    core_bytes: int
    dma_bytes: int

    @property
    def needs_converter(self) -> bool:
        return self.core_bytes != self.dma_bytes

    @property
    def mm_bits(self) -> int:
        """The DMA's memory-mapped data width on this channel: at least its stream width (and 32 bits)."""
        return max(MIN_DMA_MM_BITS, self.dma_bytes * 8)


def dma_stream_bytes(core_bytes: int) -> int:
    """The DMA stream for a core's TDATA bytes: the same width where the DMA streams it (every rtlgen core),
    else the widest DMA width (power-of-two bytes, <= 128) that divides it (an integer-ratio converter)."""
    if core_bytes < 1:
        raise ValueError(f"TDATA of {core_bytes} bytes")
    if core_bytes * 8 in DMA_STREAM_WIDTHS:
        return core_bytes
    width = MAX_DMA_STREAM_BYTES
    while core_bytes % width:
        width //= 2
    return width


def stream_links(in_width: int, out_width: int) -> tuple[StreamLink, StreamLink]:
    """(DMA MM2S -> s_axis, m_axis -> DMA S2MM) for TDATA widths in bits (multiples of 8)."""
    links = []
    for bits in (in_width, out_width):
        if bits % 8:
            raise ValueError(f"TDATA width {bits} is not a multiple of 8")
        links.append(StreamLink(core_bytes=bits // 8, dma_bytes=dma_stream_bytes(bits // 8)))
    return links[0], links[1]


def write_vivado_scripts(vivado_dir: Path, *, ip_dir: Path, options: IpOptions, in_width: int,
                         out_width: int) -> list[Path]:
    """Write the two board designs, the package check and the board XDC files; return the paths."""
    vivado_dir = Path(vivado_dir)
    vivado_dir.mkdir(parents=True, exist_ok=True)
    to_core, from_core = stream_links(in_width, out_width)
    scripts = {
        "pynq_z2_bd.tcl": pynq_z2_tcl(options, to_core, from_core),
        "arty_a7_100t_bd.tcl": arty_a7_100t_tcl(options, to_core, from_core),
        "check_ip.tcl": check_ip_tcl(options),
    }
    written = []
    for name, text in scripts.items():
        path = vivado_dir / name
        path.write_text(text)
        written.append(path)
    written += copy_board_constraints(vivado_dir / "constraints", ["pynq_z2.xdc", "arty_a7_100t.xdc"])
    return written


def copy_board_constraints(dest_dir: Path, names: list[str]) -> list[Path]:
    """Copy the repository's board XDC files (constraints/NAME) into dest_dir."""
    source_dir = Path(__file__).resolve().parent.parent / "constraints"
    copied = []
    for name in names:
        source = source_dir / name
        if not source.is_file():
            raise FileNotFoundError(f"board constraints {source} are missing from the rtlgen installation")
        dest_dir.mkdir(parents=True, exist_ok=True)
        copied.append(Path(shutil.copyfile(source, dest_dir / name)))
    return copied


# ---------------------------------------------------------------------------------------------------------
# Tcl building blocks

def _tcl_dict(pairs) -> str:
    """`[list CONFIG.K {v} ...]` continued over lines."""
    items = " \\\n    ".join(f"CONFIG.{key} {{{value}}}" for key, value in pairs)
    return f"[list \\\n    {items} \\\n]"


def _connect(net_source: str, sinks: list[str]) -> str:
    pins = " ".join(f"[get_bd_pins {p}]" for p in [net_source, *sinks])
    return f"connect_bd_net {pins}"


def _intf(a: str, b: str) -> str:
    return f"connect_bd_intf_net [get_bd_intf_pins {a}] [get_bd_intf_pins {b}]"


def _preamble(options: IpOptions, *, title: str, part: str, board_pattern: str, project: str) -> str:
    return f"""# {title}
# Generated by rtlgen for the core {options.vlnv}. Needs Vivado 2020.1 or later.
#
#   vivado -mode batch -source {project}_bd.tcl                  # project, block design, bitstream
#   vivado -mode batch -source {project}_bd.tcl -tclargs --bd-only  # stop after the validated block design
#
# The project is created in {project}/ next to this script; the IP repository is ../ip (this build).

set script_dir [file dirname [file normalize [info script]]]
set ip_repo [file normalize [file join $script_dir .. ip]]
set core_vlnv {{{options.vlnv}}}
set part {{{part}}}
set proj_name {{{project}}}
set proj_dir [file join $script_dir $proj_name]
set bd_name {{{BD_NAME}}}
set bd_only [expr {{[lsearch -exact $argv --bd-only] >= 0}}]

# The newest version of a Xilinx IP in this Vivado's catalog (versions differ between releases).
proc rtlgen_ipdef {{name}} {{
  set defs [get_ipdefs -all -quiet xilinx.com:ip:${{name}}:*]
  if {{[llength $defs] == 0}} {{
    error "rtlgen: the Vivado IP xilinx.com:ip:$name is not in the IP catalog"
  }}
  return [lindex [lsort -dictionary $defs] end]
}}

create_project -force $proj_name $proj_dir -part $part
# Board files are optional: the design sets every pin and PS option itself.
set board [lindex [get_board_parts -quiet -latest_file_version {{{board_pattern}}}] 0]
if {{$board ne ""}} {{
  set_property board_part $board [current_project]
}}
set_property target_language Verilog [current_project]
set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog -rebuild
if {{[llength [get_ipdefs -quiet $core_vlnv]] == 0}} {{
  error "rtlgen: $core_vlnv not found in $ip_repo (run vivado/check_ip.tcl to see why)"
}}
create_bd_design $bd_name
"""


def _dma_and_core(to_core: StreamLink, from_core: StreamLink) -> tuple[str, list[str], list[str]]:
    """AXI DMA (simple mode) + the core + width converters; returns (tcl, clock pins, reset pins)."""
    mm2s_bits, s2mm_bits = to_core.dma_bytes * 8, from_core.dma_bytes * 8
    dma_config = [
        ("c_include_sg", "0"), ("c_sg_include_stscntrl_strm", "0"), ("c_sg_length_width", "26"),
        ("c_m_axi_mm2s_data_width", str(to_core.mm_bits)), ("c_m_axis_mm2s_tdata_width", str(mm2s_bits)),
        ("c_mm2s_burst_size", "16"),
        ("c_m_axi_s2mm_data_width", str(from_core.mm_bits)), ("c_s_axis_s2mm_tdata_width", str(s2mm_bits)),
        ("c_s2mm_burst_size", "16"),
    ]
    lines = [
        "# AXI DMA in simple (register) mode: MM2S feeds the core, S2MM takes its results. Its streams are as wide",
        "# as the core's TDATA (one beat a word, no width converter) and its memory side at least as wide.",
        f"# DMA streams: MM2S {mm2s_bits} bits, S2MM {s2mm_bits} bits; core TDATA: in {to_core.core_bytes * 8}, "
        f"out {from_core.core_bytes * 8} bits.",
        f"set dma [create_bd_cell -type ip -vlnv [rtlgen_ipdef axi_dma] {DMA_CELL}]",
        f"set_property -dict {_tcl_dict(dma_config)} $dma",
        "",
        "# The rtlgen core",
        f"set accel [create_bd_cell -type ip -vlnv $core_vlnv {CORE_CELL}]",
        "",
    ]
    clocks = [f"{DMA_CELL}/s_axi_lite_aclk", f"{DMA_CELL}/m_axi_mm2s_aclk", f"{DMA_CELL}/m_axi_s2mm_aclk",
              f"{CORE_CELL}/ap_clk"]
    resets = [f"{DMA_CELL}/axi_resetn", f"{CORE_CELL}/ap_rst_n"]

    def link(cell: str, link_: StreamLink, source: str, sink: str, what: str) -> None:
        if not link_.needs_converter:
            lines.append(f"# {what}: widths match ({link_.core_bytes * 8} bits), no converter")
            lines.append(_intf(source, sink))
            return
        s_bytes, m_bytes = ((link_.dma_bytes, link_.core_bytes) if cell == "to_accel"
                            else (link_.core_bytes, link_.dma_bytes))
        lines.extend([
            f"# {what}: {s_bytes * 8} -> {m_bytes * 8} bits",
            f"create_bd_cell -type ip -vlnv [rtlgen_ipdef axis_dwidth_converter] {cell}",
            f"set_property CONFIG.S_TDATA_NUM_BYTES.VALUE_SRC USER [get_bd_cells {cell}]",
            f"set_property -dict {_tcl_dict([('S_TDATA_NUM_BYTES', s_bytes), ('M_TDATA_NUM_BYTES', m_bytes)])} "
            f"[get_bd_cells {cell}]",
            _intf(source, f"{cell}/S_AXIS"),
            _intf(f"{cell}/M_AXIS", sink),
        ])
        clocks.append(f"{cell}/aclk")
        resets.append(f"{cell}/aresetn")

    link("to_accel", to_core, f"{DMA_CELL}/M_AXIS_MM2S", f"{CORE_CELL}/s_axis", "DMA MM2S -> core s_axis")
    link("from_accel", from_core, f"{CORE_CELL}/m_axis", f"{DMA_CELL}/S_AXIS_S2MM", "core m_axis -> DMA S2MM")

    lines.extend([
        "",
        "# The core's error flag (high from a damaged input frame until reset) on channel 1 of an AXI GPIO.",
        f"set error_gpio [create_bd_cell -type ip -vlnv [rtlgen_ipdef axi_gpio] {ERROR_GPIO_CELL}]",
        f"set_property -dict {_tcl_dict([('C_GPIO_WIDTH', 1), ('C_ALL_INPUTS', 1), ('C_INTERRUPT_PRESENT', 0)])} "
        "$error_gpio",
        _connect(f"{CORE_CELL}/error", [f"{ERROR_GPIO_CELL}/gpio_io_i"]),
    ])
    clocks.append(f"{ERROR_GPIO_CELL}/s_axi_aclk")
    resets.append(f"{ERROR_GPIO_CELL}/s_axi_aresetn")
    return "\n".join(lines) + "\n", clocks, resets


def _finish(*, xdc: str, outputs: str) -> str:
    """Validation, wrapper, constraints, and (unless --bd-only) the bitstream and its hand-off files."""
    return f"""
assign_bd_address
validate_bd_design
save_bd_design

set wrapper [make_wrapper -files [get_files $bd_name.bd] -top]
add_files -norecurse $wrapper
set_property top ${{bd_name}}_wrapper [current_fileset]
update_compile_order -fileset sources_1
add_files -fileset constrs_1 -norecurse [file join $script_dir constraints {xdc}]

if {{$bd_only}} {{
  puts "rtlgen: block design $bd_name validated and saved in $proj_dir (--bd-only: no bitstream)"
  return
}}

launch_runs impl_1 -to_step write_bitstream -jobs 4
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{
  error "rtlgen: implementation did not finish; see the logs in $proj_dir"
}}
set out_dir [file join $script_dir $proj_name.out]
file mkdir $out_dir
set bit [file join $proj_dir $proj_name.runs impl_1 ${{bd_name}}_wrapper.bit]
{outputs}
puts "rtlgen: bitstream and hand-off files are in $out_dir"
"""


# ---------------------------------------------------------------------------------------------------------
# The boards

def pynq_z2_tcl(options: IpOptions, to_core: StreamLink, from_core: StreamLink) -> str:
    dma, clocks, resets = _dma_and_core(to_core, from_core)
    ps_options = [
        ("PCW_USE_M_AXI_GP0", "1"), ("PCW_USE_S_AXI_HP0", "1"),
        ("PCW_S_AXI_HP0_DATA_WIDTH", str(PYNQ_Z2_HP_PORT_BITS)),
        ("PCW_EN_CLK0_PORT", "1"), ("PCW_FPGA_FCLK0_ENABLE", "1"),
        ("PCW_FPGA0_PERIPHERAL_FREQMHZ", f"{options.clock_mhz:g}"),
        ("PCW_EN_RST0_PORT", "1"), ("PCW_USE_FABRIC_INTERRUPT", "1"), ("PCW_IRQ_F2P_INTR", "1"),
    ]
    clocks = ["ps7/M_AXI_GP0_ACLK", "ps7/S_AXI_HP0_ACLK", "rst_ps7/slowest_sync_clk", "axi_smc_ctrl/aclk",
              "axi_smc_mem/aclk", *clocks]
    text = _preamble(options, title="Pynq-Z2 demo: Zynq PS7 + AXI DMA (simple mode) + the rtlgen core",
                     part=PYNQ_Z2_PART, board_pattern="*pynq-z2*", project="pynq_z2")
    text += f"""
# Zynq PS7 with the Pynq-Z2's DDR/MIO settings; FCLK_CLK0 clocks the PL at {options.clock_mhz:g} MHz
# (from --clock-ns {float(options.clock_ns):g}; Vivado picks the nearest frequency the PS can make).
set ps7 [create_bd_cell -type ip -vlnv [rtlgen_ipdef processing_system7] ps7]
set_property -dict {_tcl_dict(PYNQ_Z2_PS7_PRESET)} $ps7
set_property -dict {_tcl_dict(ps_options)} $ps7
create_bd_intf_port -mode Master -vlnv xilinx.com:interface:ddrx_rtl:1.0 DDR
create_bd_intf_port -mode Master -vlnv xilinx.com:display_processing_system7:fixedio_rtl:1.0 FIXED_IO
connect_bd_intf_net [get_bd_intf_ports DDR] [get_bd_intf_pins ps7/DDR]
connect_bd_intf_net [get_bd_intf_ports FIXED_IO] [get_bd_intf_pins ps7/FIXED_IO]

create_bd_cell -type ip -vlnv [rtlgen_ipdef proc_sys_reset] rst_ps7

{dma}
# PS GP0 -> DMA registers; DMA MM2S and S2MM -> PS HP0 (DDR)
create_bd_cell -type ip -vlnv [rtlgen_ipdef smartconnect] axi_smc_ctrl
set_property -dict {_tcl_dict([("NUM_SI", 1), ("NUM_MI", 2)])} [get_bd_cells axi_smc_ctrl]
{_intf("ps7/M_AXI_GP0", "axi_smc_ctrl/S00_AXI")}
{_intf("axi_smc_ctrl/M00_AXI", f"{DMA_CELL}/S_AXI_LITE")}
{_intf("axi_smc_ctrl/M01_AXI", f"{ERROR_GPIO_CELL}/S_AXI")}
create_bd_cell -type ip -vlnv [rtlgen_ipdef smartconnect] axi_smc_mem
set_property -dict {_tcl_dict([("NUM_SI", 2), ("NUM_MI", 1)])} [get_bd_cells axi_smc_mem]
{_intf(f"{DMA_CELL}/M_AXI_MM2S", "axi_smc_mem/S00_AXI")}
{_intf(f"{DMA_CELL}/M_AXI_S2MM", "axi_smc_mem/S01_AXI")}
{_intf("axi_smc_mem/M00_AXI", "ps7/S_AXI_HP0")}

# One clock, one reset for the whole PL
{_connect("ps7/FCLK_CLK0", clocks)}
{_connect("ps7/FCLK_RESET0_N", ["rst_ps7/ext_reset_in"])}
{_connect("rst_ps7/peripheral_aresetn", resets)}
{_connect("rst_ps7/interconnect_aresetn", ["axi_smc_ctrl/aresetn", "axi_smc_mem/aresetn"])}

# DMA interrupts to the PS (IRQ_F2P[0] = MM2S done, [1] = S2MM done)
create_bd_cell -type ip -vlnv [rtlgen_ipdef xlconcat] irq_concat
set_property -dict {_tcl_dict([("NUM_PORTS", 2)])} [get_bd_cells irq_concat]
{_connect(f"{DMA_CELL}/mm2s_introut", ["irq_concat/In0"])}
{_connect(f"{DMA_CELL}/s2mm_introut", ["irq_concat/In1"])}
{_connect("irq_concat/dout", ["ps7/IRQ_F2P"])}
"""
    text += _finish(xdc="pynq_z2.xdc", outputs="""# PYNQ loads an overlay from a .bit and the .hwh of the same name.
file copy -force $bit [file join $out_dir $bd_name.bit]
set hwh [lindex [glob -nocomplain [file join $proj_dir * sources_1 bd $bd_name hw_handoff $bd_name.hwh]] 0]
if {$hwh ne ""} {
  file copy -force $hwh [file join $out_dir $bd_name.hwh]
}
write_hw_platform -fixed -include_bit -force -file [file join $out_dir $bd_name.xsa]""")
    return text


def arty_a7_100t_tcl(options: IpOptions, to_core: StreamLink, from_core: StreamLink) -> str:
    dma, clocks, resets = _dma_and_core(to_core, from_core)
    lmb_clocks = ["microblaze_0/Clk", "dlmb/LMB_Clk", "ilmb/LMB_Clk", "dlmb_cntlr/LMB_Clk", "ilmb_cntlr/LMB_Clk"]
    clocks = [*lmb_clocks, "rst_clk/slowest_sync_clk", "axi_smc/aclk", "axi_uartlite_0/s_axi_aclk",
              "axi_bram_ctrl_0/s_axi_aclk", *clocks]
    resets = ["axi_uartlite_0/s_axi_aresetn", "axi_bram_ctrl_0/s_axi_aresetn", *resets]
    text = _preamble(options, title="Arty A7-100T demo: MicroBlaze + on-chip BRAM + AXI DMA + the rtlgen core "
                                    "(no DDR)", part=ARTY_A7_100T_PART, board_pattern="*arty-a7-100*",
                     project="arty_a7_100t")
    text += f"""
# Board pins: 100 MHz oscillator, the red RESET button (ck_rst, active low), the USB-UART.
create_bd_port -dir I -type clk -freq_hz 100000000 sys_clock
create_bd_port -dir I -type rst reset
set_property CONFIG.POLARITY ACTIVE_LOW [get_bd_ports reset]
create_bd_intf_port -mode Master -vlnv xilinx.com:interface:uart_rtl:1.0 usb_uart

# System clock at {options.clock_mhz:g} MHz (from --clock-ns {float(options.clock_ns):g})
create_bd_cell -type ip -vlnv [rtlgen_ipdef clk_wiz] clk_wiz_0
set_property -dict {_tcl_dict([("CLKOUT1_REQUESTED_OUT_FREQ", f"{options.clock_mhz:.3f}"),
                               ("RESET_TYPE", "ACTIVE_LOW"), ("RESET_PORT", "resetn")])} [get_bd_cells clk_wiz_0]
create_bd_cell -type ip -vlnv [rtlgen_ipdef proc_sys_reset] rst_clk
connect_bd_net [get_bd_ports sys_clock] [get_bd_pins clk_wiz_0/clk_in1]
connect_bd_net [get_bd_ports reset] [get_bd_pins clk_wiz_0/resetn] [get_bd_pins rst_clk/ext_reset_in]
"""
    text += f"""{_connect("clk_wiz_0/locked", ["rst_clk/dcm_locked"])}

# MicroBlaze with 64 KB of local memory (code and stack), debug module for JTAG download
create_bd_cell -type ip -vlnv [rtlgen_ipdef microblaze] microblaze_0
set_property -dict {_tcl_dict([("C_D_AXI", 1), ("C_D_LMB", 1), ("C_I_LMB", 1), ("C_DEBUG_ENABLED", 1)])} [get_bd_cells microblaze_0]
create_bd_cell -type ip -vlnv [rtlgen_ipdef lmb_v10] dlmb
create_bd_cell -type ip -vlnv [rtlgen_ipdef lmb_v10] ilmb
create_bd_cell -type ip -vlnv [rtlgen_ipdef lmb_bram_if_cntlr] dlmb_cntlr
create_bd_cell -type ip -vlnv [rtlgen_ipdef lmb_bram_if_cntlr] ilmb_cntlr
set_property -dict {_tcl_dict([("C_ECC", 0)])} [get_bd_cells dlmb_cntlr]
set_property -dict {_tcl_dict([("C_ECC", 0)])} [get_bd_cells ilmb_cntlr]
create_bd_cell -type ip -vlnv [rtlgen_ipdef blk_mem_gen] lmb_bram
set_property -dict {_tcl_dict([("Memory_Type", "True_Dual_Port_RAM"), ("use_bram_block", "BRAM_Controller")])} [get_bd_cells lmb_bram]
{_intf("microblaze_0/DLMB", "dlmb/LMB_M")}
{_intf("dlmb/LMB_Sl_0", "dlmb_cntlr/SLMB")}
{_intf("dlmb_cntlr/BRAM_PORT", "lmb_bram/BRAM_PORTA")}
{_intf("microblaze_0/ILMB", "ilmb/LMB_M")}
{_intf("ilmb/LMB_Sl_0", "ilmb_cntlr/SLMB")}
{_intf("ilmb_cntlr/BRAM_PORT", "lmb_bram/BRAM_PORTB")}
create_bd_cell -type ip -vlnv [rtlgen_ipdef mdm] mdm_1
{_intf("mdm_1/MBDEBUG_0", "microblaze_0/DEBUG")}
{_connect("mdm_1/Debug_SYS_Rst", ["rst_clk/mb_debug_sys_rst"])}

# 64 KB of AXI BRAM that the DMA reads frames from and writes results to (this design has no DDR), as wide as
# the DMA's memory side, so a DMA burst moves one stream beat a cycle.
create_bd_cell -type ip -vlnv [rtlgen_ipdef axi_bram_ctrl] axi_bram_ctrl_0
set_property -dict {_tcl_dict([("SINGLE_PORT_BRAM", 1), ("DATA_WIDTH", max(to_core.mm_bits, from_core.mm_bits))])} [get_bd_cells axi_bram_ctrl_0]
create_bd_cell -type ip -vlnv [rtlgen_ipdef blk_mem_gen] data_bram
set_property -dict {_tcl_dict([("Memory_Type", "Single_Port_RAM"), ("use_bram_block", "BRAM_Controller")])} [get_bd_cells data_bram]
{_intf("axi_bram_ctrl_0/BRAM_PORTA", "data_bram/BRAM_PORTA")}

# UART for the program's output
create_bd_cell -type ip -vlnv [rtlgen_ipdef axi_uartlite] axi_uartlite_0
set_property -dict {_tcl_dict([("C_BAUDRATE", 115200)])} [get_bd_cells axi_uartlite_0]
connect_bd_intf_net [get_bd_intf_ports usb_uart] [get_bd_intf_pins axi_uartlite_0/UART]

{dma}
# One AXI crossbar: MicroBlaze data port and both DMA masters -> DMA registers, UART, data BRAM, error GPIO
create_bd_cell -type ip -vlnv [rtlgen_ipdef smartconnect] axi_smc
set_property -dict {_tcl_dict([("NUM_SI", 3), ("NUM_MI", 4)])} [get_bd_cells axi_smc]
{_intf("microblaze_0/M_AXI_DP", "axi_smc/S00_AXI")}
{_intf(f"{DMA_CELL}/M_AXI_MM2S", "axi_smc/S01_AXI")}
{_intf(f"{DMA_CELL}/M_AXI_S2MM", "axi_smc/S02_AXI")}
{_intf("axi_smc/M00_AXI", f"{DMA_CELL}/S_AXI_LITE")}
{_intf("axi_smc/M01_AXI", "axi_uartlite_0/S_AXI")}
{_intf("axi_smc/M02_AXI", "axi_bram_ctrl_0/S_AXI")}
{_intf("axi_smc/M03_AXI", f"{ERROR_GPIO_CELL}/S_AXI")}

# Clock and resets
{_connect("clk_wiz_0/clk_out1", clocks)}
{_connect("rst_clk/mb_reset", ["microblaze_0/Reset"])}
{_connect("rst_clk/bus_struct_reset", ["dlmb/SYS_Rst", "ilmb/SYS_Rst", "dlmb_cntlr/LMB_Rst", "ilmb_cntlr/LMB_Rst"])}
{_connect("rst_clk/peripheral_aresetn", resets)}
{_connect("rst_clk/interconnect_aresetn", ["axi_smc/aresetn"])}

# Address map: local memory at 0 for code and data, the data BRAM at 0xC0000000 for CPU and DMA alike.
assign_bd_address -offset 0x00000000 -range 64K -target_address_space [get_bd_addr_spaces microblaze_0/Data] [get_bd_addr_segs dlmb_cntlr/SLMB/Mem] -force
assign_bd_address -offset 0x00000000 -range 64K -target_address_space [get_bd_addr_spaces microblaze_0/Instruction] [get_bd_addr_segs ilmb_cntlr/SLMB/Mem] -force
foreach space {{microblaze_0/Data {DMA_CELL}/Data_MM2S {DMA_CELL}/Data_S2MM}} {{
  assign_bd_address -offset 0xC0000000 -range 64K -target_address_space [get_bd_addr_spaces $space] [get_bd_addr_segs axi_bram_ctrl_0/S_AXI/Mem0] -force
}}
"""
    text += _finish(xdc="arty_a7_100t.xdc", outputs="""file copy -force $bit [file join $out_dir $bd_name.bit]
# For Vitis: a bare-metal MicroBlaze program drives the DMA (XAxiDma simple transfers) and prints over UART.
write_hw_platform -fixed -include_bit -force -file [file join $out_dir $bd_name.xsa]""")
    return text


def check_ip_tcl(options: IpOptions) -> str:
    return f"""# Package check for the rtlgen core {options.vlnv}, without building anything:
#
#   vivado -mode batch -source check_ip.tcl
#
# Opens ../ip/component.xml with ipx::open_core, runs ipx::check_integrity on it, then adds ../ip to the IP
# repositories of an in-memory project and checks that the IP catalog lists the core. Exits 0 on success.

set script_dir [file dirname [file normalize [info script]]]
set ip_dir [file normalize [file join $script_dir .. ip]]
set component [file join $ip_dir component.xml]
set core_vlnv {{{options.vlnv}}}

create_project -in_memory -part {{{options.part}}}
set core [ipx::open_core $component]
if {{[catch {{ipx::check_integrity $core}} result]}} {{
  puts "rtlgen: ipx::check_integrity found problems in $component: $result"
  exit 1
}}
ipx::unload_core $component

set_property ip_repo_paths [list $ip_dir] [current_project]
update_ip_catalog -rebuild
if {{[llength [get_ipdefs -quiet $core_vlnv]] == 0}} {{
  puts "rtlgen: $core_vlnv is not in the IP catalog after adding $ip_dir"
  exit 1
}}
puts "rtlgen: $core_vlnv passed ipx::check_integrity and is in the IP catalog"
exit 0
"""
