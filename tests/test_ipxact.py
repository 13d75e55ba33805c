"""The Vivado IP package (component.xml and friends) and the Vivado Tcl, checked without Vivado.

What is proven here: component.xml is valid IEEE 1685-2009 (the schema, offline), names only files that
exist, and its ports are the emitted Verilog's ports (read back by Verilator, not taken from the generator);
its interfaces, parameters and Xilinx extensions have the shape of the component.xml files Vivado writes.
The Tcl scripts run under tclsh with every Vivado command they use replaced by a recorder, and the recorded
block design is checked: the right part, the core's VLNV, DMA -> s_axis and m_axis -> DMA with matching
stream widths, one clock and reset reaching the core. What Vivado itself would say is not proven here.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtlgen.ipxact import IpOptions, Port, core_revision, write_ip_package
from rtlgen.verilog_ports import VerilogPortError, read_verilog_ports

from ipxact_checks import (EXAMPLES_DIR, NS, SCHEMA_DIR, SHARED, SPIRIT, XILINX, check_named_files,  # noqa: F401
                            check_ports_match_verilog, check_schema, component, component_ports, lxml_etree,
                            load_schema, text)

TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (apt-get install tcl)")


# ---------------------------------------------------------------------------------------------------------
# Hand-made designs: a top with the contract's port names, and a submodule in a second file.

SUBMODULE = """\
module skid_reg #(parameter W = 8) (
  input wire clk, input wire rst_n,
  input wire [W-1:0] d, input wire d_valid, output wire d_ready,
  output reg [W-1:0] q, output reg q_valid, input wire q_ready
);
  assign d_ready = !q_valid || q_ready;
  always @(posedge clk) begin
    if (!rst_n) q_valid <= 1'b0;
    else if (d_ready) begin q <= d; q_valid <= d_valid; end
  end
endmodule
"""


def top_verilog(top: str, in_width: int, out_width: int, input_tlast: bool = True) -> str:
    # The output word repeats/truncates the input word; TLAST every 4th word; error is s_axis_tlast seen at all.
    # Only the ports matter here.
    reps = (out_width + in_width - 1) // in_width
    tlast_port = "\n  input wire s_axis_tlast," if input_tlast else ""
    error_source = "s_axis_tvalid && s_axis_tlast" if input_tlast else "1'b0"
    return f"""\
module {top} (
  input wire ap_clk,
  input wire ap_rst_n,
  input wire [{in_width - 1}:0] s_axis_tdata,
  input wire s_axis_tvalid,
  output wire s_axis_tready,{tlast_port}
  output wire [{out_width - 1}:0] m_axis_tdata,
  output wire m_axis_tvalid,
  input wire m_axis_tready,
  output wire m_axis_tlast,
  output reg error
);
  localparam W = {out_width};
  wire [{reps * in_width - 1}:0] wide = {{{reps}{{s_axis_tdata}}}};
  reg [1:0] count;
  skid_reg #(.W(W)) out_reg (
    .clk(ap_clk), .rst_n(ap_rst_n),
    .d(wide[W-1:0]), .d_valid(s_axis_tvalid), .d_ready(s_axis_tready),
    .q(m_axis_tdata), .q_valid(m_axis_tvalid), .q_ready(m_axis_tready)
  );
  always @(posedge ap_clk) begin
    if (!ap_rst_n) count <= 2'd0;
    else if (m_axis_tvalid && m_axis_tready) count <= count + 2'd1;
  end
  always @(posedge ap_clk) begin
    if (!ap_rst_n) error <= 1'b0;
    else if ({error_source}) error <= 1'b1;
  end
  assign m_axis_tlast = count == 2'd3;
endmodule
"""


def contract_ports(in_width: int, out_width: int, input_tlast: bool = True) -> list[Port]:
    """The port list as the compiler hands it over (deliberately not read back from the Verilog)."""
    return [Port("ap_clk", "in", 1), Port("ap_rst_n", "in", 1),
            Port("s_axis_tdata", "in", in_width), Port("s_axis_tvalid", "in", 1), Port("s_axis_tready", "out", 1),
            *([Port("s_axis_tlast", "in", 1)] if input_tlast else []),
            Port("m_axis_tdata", "out", out_width), Port("m_axis_tvalid", "out", 1),
            Port("m_axis_tready", "in", 1), Port("m_axis_tlast", "out", 1), Port("error", "out", 1)]


def make_build(root: Path, in_width: int, out_width: int, *, top: str = "accel_top",
               options: IpOptions | None = None, input_tlast: bool = True) -> tuple[Path, list[Path]]:
    hdl = root / "ip" / "hdl"
    hdl.mkdir(parents=True, exist_ok=True)
    (hdl / f"{top}.v").write_text(top_verilog(top, in_width, out_width, input_tlast))
    (hdl / "skid_reg.v").write_text(SUBMODULE)
    written = write_ip_package(root, top_name=top, ports=contract_ports(in_width, out_width, input_tlast),
                               hdl_files=[f"{top}.v", "skid_reg.v"], options=options or IpOptions())
    return root, written


# TDATA widths: an rtlgen core's (DMA widths: 64 in, 128 out), and two hand-made cores' (any whole bytes; the
# block designs then need width converters)
DESIGNS = {"in64_out128": (64, 128), "in16_out24": (16, 24), "in800_out40": (800, 40)}
DMA_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)


@pytest.fixture(scope="module", params=sorted(DESIGNS))
def build(request, tmp_path_factory):
    in_width, out_width = DESIGNS[request.param]
    root, written = make_build(tmp_path_factory.mktemp(request.param), in_width, out_width)
    return root, written, in_width, out_width


# ---------------------------------------------------------------------------------------------------------
# component.xml

def test_component_validates_against_ieee_1685_2009(build):
    root, *_ = build
    check_schema(root)


def test_every_named_file_exists_and_is_relative(build):
    root, written, *_ = build
    check_named_files(root)
    for path in written:
        assert path.is_file(), path


def test_ports_match_the_verilog_read_by_verilator(build):
    root, _, in_width, out_width = build
    widths = check_ports_match_verilog(root)
    assert (widths["s_axis_tdata"], widths["m_axis_tdata"]) == (in_width, out_width)


def test_bus_interfaces(build):
    root, _, in_width, out_width = build
    doc = component(root)
    port_names = {p.name for p in component_ports(doc)}
    interfaces = {text(b, "spirit:name"): b for b in doc.iterfind(".//spirit:busInterfaces/spirit:busInterface", NS)}
    assert set(interfaces) == {"s_axis", "m_axis", "ap_clk", "ap_rst_n"}

    def bus(name):
        b = interfaces[name]
        bt, at = b.find("spirit:busType", NS), b.find("spirit:abstractionType", NS)
        return (bt.get(f"{{{SPIRIT}}}vendor"), bt.get(f"{{{SPIRIT}}}library"), bt.get(f"{{{SPIRIT}}}name"),
                at.get(f"{{{SPIRIT}}}name"), "master" if b.find("spirit:master", NS) is not None else "slave")

    def params(name):
        return {text(p, "spirit:name"): text(p, "spirit:value")
                for p in interfaces[name].iterfind("spirit:parameters/spirit:parameter", NS)}

    def port_map(name):
        return {text(m, "spirit:logicalPort/spirit:name"): text(m, "spirit:physicalPort/spirit:name")
                for m in interfaces[name].iterfind("spirit:portMaps/spirit:portMap", NS)}

    assert bus("s_axis") == ("xilinx.com", "interface", "axis", "axis_rtl", "slave")
    assert bus("m_axis") == ("xilinx.com", "interface", "axis", "axis_rtl", "master")
    assert bus("ap_clk") == ("xilinx.com", "signal", "clock", "clock_rtl", "slave")
    assert bus("ap_rst_n") == ("xilinx.com", "signal", "reset", "reset_rtl", "slave")
    assert port_map("s_axis") == {"TDATA": "s_axis_tdata", "TVALID": "s_axis_tvalid", "TREADY": "s_axis_tready",
                                  "TLAST": "s_axis_tlast"}
    assert port_map("m_axis") == {"TDATA": "m_axis_tdata", "TVALID": "m_axis_tvalid", "TREADY": "m_axis_tready",
                                  "TLAST": "m_axis_tlast"}
    for name in interfaces:
        assert set(port_map(name).values()) <= port_names, name
    # `error` is a plain output port of the component, in no bus interface
    assert "error" in port_names
    assert all("error" not in port_map(name).values() for name in interfaces)
    error = next(p for p in component_ports(doc) if p.name == "error")
    assert (error.direction, error.width) == ("out", 1)

    clock = params("ap_clk")
    assert set(clock["ASSOCIATED_BUSIF"].split(":")) == {"s_axis", "m_axis"}
    assert set(clock["ASSOCIATED_BUSIF"].split(":")) <= set(interfaces)
    assert clock["ASSOCIATED_RESET"] in interfaces and bus(clock["ASSOCIATED_RESET"])[2] == "reset"
    assert params("ap_rst_n")["POLARITY"] == "ACTIVE_LOW"
    assert b"FREQ_HZ" not in (root / "ip" / "component.xml").read_bytes()  # the BD propagates the clock

    widths = {p.name: p.width for p in component_ports(doc)}
    for name, tdata in (("s_axis", "s_axis_tdata"), ("m_axis", "m_axis_tdata")):
        assert widths[tdata] % 8 == 0
        assert int(params(name)["TDATA_NUM_BYTES"]) * 8 == widths[tdata]


def test_views_parameters_and_xilinx_extensions(build):
    root, *_ = build
    doc = component(root)
    views = {text(v, "spirit:name"): v for v in doc.iterfind(".//spirit:model/spirit:views/spirit:view", NS)}
    assert {"xilinx_anylanguagesynthesis", "xilinx_anylanguagebehavioralsimulation", "xilinx_xpgui"} <= set(views)
    assert text(views["xilinx_anylanguagesynthesis"], "spirit:envIdentifier") == ":vivado.xilinx.com:synthesis"
    assert text(views["xilinx_anylanguagebehavioralsimulation"], "spirit:envIdentifier") == \
        ":vivado.xilinx.com:simulation"
    assert text(views["xilinx_xpgui"], "spirit:envIdentifier") == ":vivado.xilinx.com:xgui.ui"
    file_sets = {text(f, "spirit:name") for f in doc.iterfind(".//spirit:fileSets/spirit:fileSet", NS)}
    for view in views.values():
        assert text(view, "spirit:fileSetRef/spirit:localName") in file_sets
    # Every view names only HDL views that exist (wireTypeDef/viewNameRef).
    for ref in doc.iterfind(".//spirit:viewNameRef", NS):
        assert ref.text in views

    ooc = doc.find(".//spirit:file[spirit:name='constraints/rtlgen_accel_ooc.xdc']", NS)
    assert [u.text for u in ooc.iterfind("spirit:userFileType", NS)] == ["xdc", "USED_IN_out_of_context"]
    xgui = doc.find(".//spirit:file[spirit:name='xgui/rtlgen_accel_v1_0.tcl']", NS)
    assert text(xgui, "spirit:fileType") == "tclSource"
    assert "XGUI_VERSION_2" in [u.text for u in xgui.iterfind("spirit:userFileType", NS)]

    params = {text(p, "spirit:name"): p.find("spirit:value", NS)
              for p in doc.iterfind("spirit:parameters/spirit:parameter", NS)}
    assert params["Component_Name"].text == "rtlgen_accel_v1_0"
    assert params["Component_Name"].get(f"{{{SPIRIT}}}id") == "PARAM_VALUE.Component_Name"

    assert (text(doc, "spirit:vendor"), text(doc, "spirit:library"), text(doc, "spirit:name"),
            text(doc, "spirit:version")) == ("rtlgen.org", "rtlgen", "rtlgen_accel", "1.0")
    core = doc.find("spirit:vendorExtensions/xilinx:coreExtensions", NS)
    families = {f.text for f in core.iterfind("xilinx:supportedFamilies/xilinx:family", NS)}
    assert {"zynq", "artix7", "kintex7", "virtex7", "spartan7", "zynquplus", "virtexuplus"} <= families
    assert [t.text for t in core.iterfind("xilinx:taxonomies/xilinx:taxonomy", NS)] == ["/UserIP"]
    assert int(text(core, "xilinx:coreRevision")) > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text(core, "xilinx:coreCreationDateTime"))


def tags(element) -> list[str]:
    return [lxml_etree.QName(child).localname for child in element if isinstance(child.tag, str)]


@pytest.mark.skipif(not (EXAMPLES_DIR / "vivado2024_rtl_axis_fifo_component.xml").is_file(),
                    reason="Vivado-written example component.xml not available")
def test_structure_mirrors_the_vivado_written_examples(build):
    root, *_ = build
    ours = component(root).getroot()
    for example_name in ("vivado2024_rtl_axis_fifo_component.xml", "vivado_hls2018_axis_component.xml"):
        example = lxml_etree.parse(str(EXAMPLES_DIR / example_name)).getroot()
        # Top-level elements: ours appear in the order Vivado writes them.
        theirs = tags(example)
        assert [t for t in theirs if t in tags(ours)] == tags(ours), example_name
        # A bus interface, a port and a file are laid out as Vivado lays them out.
        for path in ("spirit:busInterfaces/spirit:busInterface", "spirit:model/spirit:ports/spirit:port/spirit:wire",
                     "spirit:model/spirit:views/spirit:view"):
            mine = tags(ours.find(path, NS))
            example_order = [t for t in tags(example.find(path, NS)) if t in mine]
            assert [t for t in mine if t in example_order] == example_order, (example_name, path)
        # Only Xilinx extensions that Vivado itself writes.
        their_ext = {lxml_etree.QName(e).localname for e in example.iterfind(".//xilinx:*", NS)}
        our_ext = {lxml_etree.QName(e).localname for e in ours.iterfind(".//xilinx:*", NS)}
        if example_name.startswith("vivado2024"):
            assert our_ext <= their_ext, our_ext - their_ext


def test_core_revision_follows_the_hdl(tmp_path):
    a, _ = make_build(tmp_path / "a", 16, 24)
    b, _ = make_build(tmp_path / "b", 16, 24, options=IpOptions(clock_ns=5.0))
    c, _ = make_build(tmp_path / "c", 16, 32)

    def revision(root):
        return int(text(component(root), "spirit:vendorExtensions/xilinx:coreExtensions/xilinx:coreRevision"))

    assert revision(a) == revision(b)  # same HDL, same revision, whatever the options
    assert revision(a) != revision(c)
    hdl = a / "ip" / "hdl"
    before = core_revision(hdl, ["accel_top.v", "skid_reg.v"])
    (hdl / "skid_reg.v").write_text(SUBMODULE.replace("q_valid <= d_valid", "q_valid <= d_valid & rst_n"))
    assert core_revision(hdl, ["accel_top.v", "skid_reg.v"]) != before


def test_options_reach_the_package(tmp_path):
    options = IpOptions(vendor="example.com", library="nn", name="kws_net", version="2.3",
                        part="xc7a100tcsg324-1", clock_ns=4.0)
    root, written = make_build(tmp_path, 16, 24, options=options)
    doc = component(root)
    assert (text(doc, "spirit:vendor"), text(doc, "spirit:library"), text(doc, "spirit:name"),
            text(doc, "spirit:version")) == ("example.com", "nn", "kws_net", "2.3")
    assert (root / "ip" / "xgui" / "kws_net_v2_3.tcl").is_file()
    ooc = (root / "ip" / "constraints" / "kws_net_ooc.xdc").read_text()
    assert re.search(r"create_clock -name ap_clk -period 4\.000 \[get_ports ap_clk\]", ooc)
    assert (root / "ip" / "kws_net.core").is_file()
    assert "set core_vlnv {example.com:nn:kws_net:2.3}" in (root / "vivado" / "pynq_z2_bd.tcl").read_text()
    assert "-part {xc7a100tcsg324-1}" in (root / "vivado" / "check_ip.tcl").read_text()
    default_root, _ = make_build(tmp_path / "default", 16, 24)
    assert "-period 10.000" in (default_root / "ip" / "constraints" / "rtlgen_accel_ooc.xdc").read_text()


@pytest.mark.parametrize("field, value", [
    ("name", "9lives"), ("name", "my-core"), ("name", ""), ("version", "1"), ("version", "1.0.0"),
    ("version", "v1.0"), ("clock_ns", 0), ("clock_ns", -3.0), ("clock_ns", float("nan")), ("part", ""),
    ("part", "xc7z020 clg400"), ("vendor", "a:b"), ("library", ""),
])
def test_bad_options_raise_one_line_value_errors(field, value):
    with pytest.raises(ValueError) as err:
        IpOptions(**{field: value})
    message = str(err.value)
    assert field in message and "\n" not in message


def test_core_without_input_tlast(tmp_path):
    """A core built with --ignore-input-tlast: no s_axis_tlast, s_axis maps no TLAST, the ports still match."""
    root, _ = make_build(tmp_path, 64, 128, input_tlast=False)
    check_schema(root)
    widths = check_ports_match_verilog(root)
    assert "s_axis_tlast" not in widths and widths["error"] == 1
    s_axis = next(b for b in component(root).iterfind(".//spirit:busInterfaces/spirit:busInterface", NS)
                  if text(b, "spirit:name") == "s_axis")
    logical = {text(m, "spirit:logicalPort/spirit:name") for m in s_axis.iterfind("spirit:portMaps/spirit:portMap", NS)}
    assert logical == {"TDATA", "TVALID", "TREADY"}


def test_bad_ports_and_files_are_refused(tmp_path):
    hdl = tmp_path / "ip" / "hdl"
    hdl.mkdir(parents=True)
    (hdl / "t.v").write_text(top_verilog("t", 16, 24))
    good = contract_ports(16, 24)
    kwargs = dict(top_name="t", hdl_files=["t.v"], options=IpOptions())
    with pytest.raises(ValueError, match="m_axis_tlast"):
        write_ip_package(tmp_path, ports=[p for p in good if p.name != "m_axis_tlast"], **kwargs)
    with pytest.raises(ValueError, match="error"):
        write_ip_package(tmp_path, ports=[p for p in good if p.name != "error"], **kwargs)
    with pytest.raises(ValueError, match="s_axis_tlast"):
        write_ip_package(tmp_path, ports=[Port("s_axis_tlast", "out", 1) if p.name == "s_axis_tlast" else p
                                          for p in good], **kwargs)
    with pytest.raises(ValueError, match="multiple of 8"):
        write_ip_package(tmp_path, ports=[Port("s_axis_tdata", "in", 12) if p.name == "s_axis_tdata" else p
                                          for p in good], **kwargs)
    with pytest.raises(ValueError, match="s_axis_tready"):
        write_ip_package(tmp_path, ports=[Port("s_axis_tready", "in", 1) if p.name == "s_axis_tready" else p
                                          for p in good], **kwargs)
    with pytest.raises(ValueError, match="does not exist"):
        write_ip_package(tmp_path, ports=good, top_name="t", hdl_files=["t.v", "missing.v"], options=IpOptions())


def test_fusesoc_core_names_the_same_rtl(build):
    root, *_ = build
    core = (root / "ip" / "rtlgen_accel.core").read_text()
    assert core.splitlines()[0] == "CAPI=2:"
    assert 'name: "rtlgen.org:rtlgen:rtlgen_accel:1.0"' in core
    listed = re.findall(r'^\s+- "([^"]+)"$', core, flags=re.M)
    assert "hdl/accel_top.v" in listed and "hdl/skid_reg.v" in listed
    for rel in listed:
        assert (root / "ip" / rel).is_file(), rel
    assert re.search(r"^\s+toplevel: accel_top$", core, flags=re.M)
    assert "part: xc7z020clg400-1" in core


FUSESOC = Path(sys.executable).with_name("fusesoc")  # installed with the test extra, in the same environment


def test_fusesoc_accepts_the_core(build):
    root, *_ = build
    assert FUSESOC.is_file(), "fusesoc is part of the test extra: pip install -e '.[test]'"
    proc = subprocess.run([str(FUSESOC), "--cores-root", str(root / "ip"), "core", "show",
                           "rtlgen.org:rtlgen:rtlgen_accel:1.0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "rtlgen_accel.core" in proc.stdout, proc.stdout + proc.stderr


def test_read_verilog_ports_reports_a_missing_top(tmp_path):
    path = tmp_path / "t.v"
    path.write_text(top_verilog("t", 16, 24) + SUBMODULE)
    assert [p.name for p in read_verilog_ports(path, "t")][:2] == ["ap_clk", "ap_rst_n"]
    with pytest.raises(VerilogPortError):
        read_verilog_ports(path, "no_such_module")


# ---------------------------------------------------------------------------------------------------------
# Tcl under tclsh with Vivado's commands replaced by recorders

VIVADO_STUB = r"""
# tclsh vivado_stub.tcl LOG SCRIPT ?ARGS?: source SCRIPT with Vivado's commands recorded, one call a line.
set stub_log [open [lindex $argv 0] w]
set stub_script [lindex $argv 1]
set argv [lrange $argv 2 end]
set argc [llength $argv]
namespace eval ipx {}
namespace eval ipgui {}

proc stub_record {args} {
  set fields {}
  foreach a $args { lappend fields [string map [list \\ \\\\ \t \\t \n \\n] $a] }
  puts $::stub_log [join $fields \t]
  flush $::stub_log
}
# Creators and getters hand back the object they name, so nested calls record plain names.
foreach cmd {create_bd_cell create_bd_port create_bd_intf_port get_bd_cells get_bd_pins get_bd_intf_pins
             get_bd_ports get_bd_intf_ports get_bd_addr_spaces get_bd_addr_segs get_files get_runs} {
  proc $cmd {args} "stub_record $cmd {*}\$args; return \[lindex \$args end\]"
}
foreach cmd {create_project update_ip_catalog create_bd_design connect_bd_net connect_bd_intf_net
             assign_bd_address validate_bd_design save_bd_design add_files update_compile_order launch_runs
             wait_on_run write_hw_platform ipx::check_integrity ipx::unload_core
             ipgui::add_param ipgui::add_static_text} {
  proc $cmd {args} "stub_record $cmd {*}\$args; return {}"
}
proc current_project {} { return project }
proc current_fileset {} { return sources_1 }
proc get_ipdefs {args} { stub_record get_ipdefs {*}$args; return [string map {* 9.9} [lindex $args end]] }
proc get_board_parts {args} { stub_record get_board_parts {*}$args; return {} }
proc get_property {name args} { stub_record get_property $name {*}$args
  if {$name eq "PROGRESS"} { return 100% }; return {} }
proc make_wrapper {args} { stub_record make_wrapper {*}$args; return /stub/rtlgen_demo_wrapper.v }
proc ipx::open_core {args} { stub_record ipx::open_core {*}$args; return core_0 }
proc ipgui::add_page {args} { stub_record ipgui::add_page {*}$args; return page_0 }
proc set_property {args} {
  if {[lindex $args 0] eq "-dict"} {
    foreach {key value} [lindex $args 1] { stub_record set_property [lindex $args 2] $key $value }
  } else {
    stub_record set_property [lindex $args 2] [lindex $args 0] [lindex $args 1]
  }
}
rename file stub_real_file
proc file {sub args} {
  if {$sub eq "copy"} { stub_record file copy {*}$args; return }
  return [stub_real_file $sub {*}$args]
}
rename exit stub_real_exit
proc exit {{code 0}} { stub_record exit $code; close $::stub_log; stub_real_exit $code }
# Anything else is not a command this stub knows Vivado to have: fail loudly.
proc unknown {args} { error "not a stubbed Vivado command: [lindex $args 0]" }

source $stub_script
stub_record end_of_script
close $stub_log
"""


def run_stubbed(tmp_path: Path, script: Path, *args: str) -> list[list[str]]:
    stub = tmp_path / "vivado_stub.tcl"
    stub.write_text(VIVADO_STUB)
    log = tmp_path / f"{script.stem}{''.join(args)}.log"
    proc = subprocess.run([TCLSH, str(stub), str(log), str(script), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = []
    for line in log.read_text().splitlines():
        calls.append([re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n"}.get(m.group(1), m.group(1)), f)
                      for f in line.split("\t")])
    return calls


def bd_model(calls):
    """Cells, properties, interface connections and net members of a recorded block design."""
    cells = {c[-1]: c[c.index("-vlnv") + 1] for c in calls if c[0] == "create_bd_cell"}
    props = {}
    for c in calls:
        if c[0] == "set_property":
            props.setdefault(c[1], {})[c[2]] = c[3]
    intf = [(c[1], c[2]) for c in calls if c[0] == "connect_bd_intf_net"]
    nets = [set(c[1:]) for c in calls if c[0] == "connect_bd_net"]
    return cells, props, intf, nets


def stream_path(intf, start: str, end: str) -> list[str]:
    """Follow interface nets from pin `start` to pin `end` through cells' S_AXIS -> M_AXIS."""
    path, pin = [start], start
    for _ in range(4):
        other = next((b if a == pin else a for a, b in intf if pin in (a, b)), None)
        assert other is not None, f"{pin} is not connected"
        path.append(other)
        if other == end:
            return path
        cell, port = other.split("/")
        assert port == "S_AXIS", f"{other}: expected a converter's S_AXIS"
        pin = f"{cell}/M_AXIS"
        path.append(pin)
    raise AssertionError(f"no stream path from {start} to {end}: {path}")


BOARDS = {"pynq_z2_bd.tcl": ("xc7z020clg400-1", "ps7/FCLK_CLK0", "pynq_z2.xdc"),
          "arty_a7_100t_bd.tcl": ("xc7a100tcsg324-1", "clk_wiz_0/clk_out1", "arty_a7_100t.xdc")}


@needs_tclsh
@pytest.mark.parametrize("script_name", sorted(BOARDS))
def test_board_script_builds_the_block_design(build, tmp_path, script_name):
    root, _, in_width, out_width = build
    part, clock_source, xdc = BOARDS[script_name]
    script = root / "vivado" / script_name
    calls = run_stubbed(tmp_path, script)
    names = [c[0] for c in calls]
    assert names[-1] == "end_of_script"

    create = next(c for c in calls if c[0] == "create_project")
    assert create[create.index("-part") + 1] == part
    repo = next(c for c in calls if c[0] == "set_property" and c[2] == "ip_repo_paths")[3]
    assert [Path(p).resolve() for p in repo.split()] == [(root / "ip").resolve()]
    assert names.index("update_ip_catalog") < names.index("create_bd_design")

    cells, props, intf, nets = bd_model(calls)
    assert cells["accel"] == "rtlgen.org:rtlgen:rtlgen_accel:1.0"
    dma = props["axi_dma"]
    assert cells["axi_dma"].startswith("xilinx.com:ip:axi_dma:") and dma["CONFIG.c_include_sg"] == "0"

    # DMA MM2S -> (converter) -> s_axis and m_axis -> (converter) -> DMA S2MM, widths agreeing at each hop.
    widths = {p.name: p.width for p in read_verilog_ports(sorted((root / "ip" / "hdl").glob("*.v")), "accel_top")}
    for start, end, dma_key, core_port in (
            ("axi_dma/M_AXIS_MM2S", "accel/s_axis", "CONFIG.c_m_axis_mm2s_tdata_width", "s_axis_tdata"),
            ("accel/m_axis", "axi_dma/S_AXIS_S2MM", "CONFIG.c_s_axis_s2mm_tdata_width", "m_axis_tdata")):
        path = stream_path(intf, start, end)
        dma_bits, core_bits = int(dma[dma_key]), widths[core_port]
        assert dma_bits in DMA_WIDTHS
        assert core_bits % dma_bits == 0  # integer-ratio conversion only
        mm_key = dma_key.replace("m_axis_mm2s_tdata", "m_axi_mm2s_data").replace("s_axis_s2mm_tdata",
                                                                                  "m_axi_s2mm_data")
        assert int(dma[mm_key]) >= max(32, dma_bits)
        if core_bits in DMA_WIDTHS:  # every rtlgen core: the DMA streams exactly its width, no converter
            assert dma_bits == core_bits and len(path) == 2, path
        if len(path) == 2:
            assert dma_bits == core_bits
        else:
            converter = path[1].split("/")[0]
            assert cells[converter].startswith("xilinx.com:ip:axis_dwidth_converter:")
            s_bytes = int(props[converter]["CONFIG.S_TDATA_NUM_BYTES"])
            m_bytes = int(props[converter]["CONFIG.M_TDATA_NUM_BYTES"])
            into_core = end == "accel/s_axis"
            assert (s_bytes * 8, m_bytes * 8) == ((dma_bits, core_bits) if into_core else (core_bits, dma_bits))
            assert props[converter]["CONFIG.S_TDATA_NUM_BYTES.VALUE_SRC"] == "USER"

    # The core's error flag reaches a 1-bit all-input AXI GPIO on the processor's AXI interconnect.
    assert cells["error_gpio"].startswith("xilinx.com:ip:axi_gpio:")
    gpio = props["error_gpio"]
    assert (gpio["CONFIG.C_GPIO_WIDTH"], gpio["CONFIG.C_ALL_INPUTS"]) == ("1", "1")
    assert {"accel/error", "error_gpio/gpio_io_i"} in nets
    gpio_bus = next(a for a, b in intf if b == "error_gpio/S_AXI")
    assert re.fullmatch(r"axi_smc\w*/M\d\d_AXI", gpio_bus), gpio_bus
    smc = gpio_bus.split("/")[0]
    assert int(gpio_bus.split("/")[1][1:3]) < int(props[smc]["CONFIG.NUM_MI"])

    # One clock and one reset reach the core, the DMA, the GPIO and every converter.
    clock_net = next(n for n in nets if clock_source in n)
    converters = [c for c, v in cells.items() if "axis_dwidth_converter" in v]
    assert {"accel/ap_clk", "axi_dma/m_axi_mm2s_aclk", "axi_dma/m_axi_s2mm_aclk", "error_gpio/s_axi_aclk"} <= clock_net
    assert {f"{c}/aclk" for c in converters} <= clock_net
    reset_net = next(n for n in nets if "accel/ap_rst_n" in n)
    assert any(p.endswith("/peripheral_aresetn") for p in reset_net)
    assert {"axi_dma/axi_resetn", "error_gpio/s_axi_aresetn", *[f"{c}/aresetn" for c in converters]} <= reset_net
    for pin in {p for n in nets for p in n} | {p for pair in intf for p in pair}:
        cell = pin.split("/")[0]
        assert cell in cells or cell in {c[-1] for c in calls if c[0].startswith("create_bd_")}, pin

    for step in ("assign_bd_address", "validate_bd_design", "save_bd_design", "make_wrapper",
                 "launch_runs", "write_hw_platform"):
        assert step in names, step
    assert names.index("validate_bd_design") < names.index("make_wrapper") < names.index("launch_runs")
    constraint = next(c for c in calls if c[0] == "add_files" and "constrs_1" in c)[-1]
    assert Path(constraint).resolve() == (root / "vivado" / "constraints" / xdc).resolve()
    assert Path(constraint).is_file()

    bd_only = [c[0] for c in run_stubbed(tmp_path, script, "--bd-only")]
    assert "save_bd_design" in bd_only and "launch_runs" not in bd_only


@needs_tclsh
def test_pynq_z2_design_details(build, tmp_path):
    root, *_ = build
    calls = run_stubbed(tmp_path, root / "vivado" / "pynq_z2_bd.tcl")
    cells, props, intf, nets = bd_model(calls)
    assert cells["ps7"].startswith("xilinx.com:ip:processing_system7:")
    ps7 = props["ps7"]
    assert ps7["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "100"  # default --clock-ns 10
    assert ps7["CONFIG.PCW_USE_S_AXI_HP0"] == "1" and ps7["CONFIG.PCW_UIPARAM_DDR_PARTNO"]
    assert ("axi_smc_mem/M00_AXI", "ps7/S_AXI_HP0") in intf
    assert ("axi_smc_ctrl/M00_AXI", "axi_dma/S_AXI_LITE") in intf
    assert {"axi_dma/mm2s_introut", "irq_concat/In0"} in nets


@needs_tclsh
def test_arty_design_details_and_pins(build, tmp_path):
    root, *_ = build
    calls = run_stubbed(tmp_path, root / "vivado" / "arty_a7_100t_bd.tcl")
    cells, props, intf, nets = bd_model(calls)
    for cell in ("microblaze_0", "axi_bram_ctrl_0", "axi_uartlite_0", "clk_wiz_0", "mdm_1"):
        assert cell in cells, cell
    assert props["clk_wiz_0"]["CONFIG.CLKOUT1_REQUESTED_OUT_FREQ"] == "100.000"
    assert ("axi_smc/M02_AXI", "axi_bram_ctrl_0/S_AXI") in intf
    # the data BRAM is as wide as the DMA's memory side, so a burst moves a stream beat a cycle
    dma = props["axi_dma"]
    assert int(props["axi_bram_ctrl_0"]["CONFIG.DATA_WIDTH"]) == max(int(dma["CONFIG.c_m_axi_mm2s_data_width"]),
                                                                     int(dma["CONFIG.c_m_axi_s2mm_data_width"]))
    # Every port the XDC constrains is a port of the block design's wrapper.
    ports = {c[-1] for c in calls if c[0] == "create_bd_port"}
    ports |= {f"{c[-1]}_{sig}" for c in calls if c[0] == "create_bd_intf_port" and "uart_rtl" in c[-2]
              for sig in ("rxd", "txd")}
    xdc = (root / "vivado" / "constraints" / "arty_a7_100t.xdc").read_text()
    constrained = set(re.findall(r"^set_property .*\[get_ports \{?([\w\[\]]+)\}?\]", xdc, flags=re.M))
    assert constrained == {"sys_clock", "reset", "usb_uart_rxd", "usb_uart_txd"}
    assert constrained <= ports


@needs_tclsh
def test_check_script_opens_and_checks_the_core(build, tmp_path):
    root, *_ = build
    calls = run_stubbed(tmp_path, root / "vivado" / "check_ip.tcl")
    names = [c[0] for c in calls]
    opened = next(c for c in calls if c[0] == "ipx::open_core")[-1]
    assert Path(opened).resolve() == (root / "ip" / "component.xml").resolve()
    assert ["ipx::check_integrity", "core_0"] in calls
    assert names.index("ipx::open_core") < names.index("ipx::check_integrity")
    assert ["get_ipdefs", "-quiet", "rtlgen.org:rtlgen:rtlgen_accel:1.0"] in calls
    assert calls[-1] == ["exit", "0"]


@needs_tclsh
def test_xgui_file_defines_the_gui(build, tmp_path):
    root, *_ = build
    xgui = root / "ip" / "xgui" / "rtlgen_accel_v1_0.tcl"
    driver = tmp_path / "xgui_driver.tcl"
    driver.write_text(f"source {{{xgui}}}\ninit_gui ip_0\n")
    calls = run_stubbed(tmp_path, driver)
    assert ["ipgui::add_param", "ip_0", "-name", "Component_Name"] in calls
    about = next(c for c in calls if c[0] == "ipgui::add_static_text")
    assert "TDATA" in about[-1]
