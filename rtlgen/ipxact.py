"""The Vivado IP package of a build: DIR/ip/component.xml and everything it names, plus DIR/vivado/*.tcl.

Vivado's IP catalog reads IP-XACT IEEE 1685-2009 (the `spirit` namespace) with Xilinx vendor extensions
and nothing else, so that is what this writes, mirroring the structure of component.xml files that Vivado
itself writes (see /work/shared/ipxact/examples): bus interfaces first, then the model (views and ports),
file sets, description, parameters and the `xilinx:coreExtensions`. The element order is the schema's.

Everything is derived from the actual top-level ports handed in (which the compiler reads back from the
emitted Verilog) and from the options; nothing here keeps its own list of widths. Checksums that Vivado
computes when *it* packages a core (viewChecksum, CHECKSUM_xxxxxxxx, packagingInfo checksums) are left
out: they are optional, and a wrong one is worse than none. What Vivado needs to notice a changed design
is `xilinx:coreRevision`, which here is derived from a hash of the HDL.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from rtlgen.errors import RtlgenError

SPIRIT_NS = "http://www.spiritconsortium.org/XMLSchema/SPIRIT/1685-2009"
XILINX_NS = "http://www.xilinx.com"

# The top-level port names are a contract (docs/CONTRACTS.md); widths of the two TDATA ports vary.
CLOCK_PORT = "ap_clk"
RESET_PORT = "ap_rst_n"
AXIS_PORTS = {
    # interface name -> (mode, {logical port: (physical port, direction as seen by the core)})
    "s_axis": ("slave", {"TDATA": ("s_axis_tdata", "in"), "TVALID": ("s_axis_tvalid", "in"),
                         "TREADY": ("s_axis_tready", "out"), "TLAST": ("s_axis_tlast", "in")}),
    "m_axis": ("master", {"TDATA": ("m_axis_tdata", "out"), "TVALID": ("m_axis_tvalid", "out"),
                          "TREADY": ("m_axis_tready", "in"), "TLAST": ("m_axis_tlast", "out")}),
}
# A core built with --ignore-input-tlast has no s_axis_tlast; its s_axis interface then maps no TLAST.
OPTIONAL_PORTS = {"s_axis_tlast"}
# Plain ports outside the bus interfaces: the input framer's sticky error flag (a block design reads it
# through a GPIO; see docs/vivado.md).
PLAIN_PORTS = {"error": "out"}

# Families the core is offered for. The RTL is plain Verilog with inferred memories, so nothing ties it to
# one family; Vivado hides a core from the catalog of a project whose family is not listed here.
SUPPORTED_FAMILIES = (
    "zynq", "qzynq", "azynq",
    "artix7", "artix7l", "aartix7", "qartix7",
    "kintex7", "kintex7l", "qkintex7", "qkintex7l",
    "virtex7", "qvirtex7",
    "spartan7", "aspartan7",
    "zynquplus", "kintexuplus", "virtexuplus", "virtexuplusHBM",
    "kintexu", "virtexu",
)
# Part-number prefix -> Vivado family name, to make sure the family of --part is always listed.
_PART_FAMILIES = (
    ("xc7z", "zynq"), ("xa7z", "azynq"), ("xq7z", "qzynq"), ("xc7a", "artix7"), ("xa7a", "aartix7"),
    ("xq7a", "qartix7"), ("xc7k", "kintex7"), ("xq7k", "qkintex7"), ("xc7v", "virtex7"), ("xq7v", "qvirtex7"),
    ("xc7s", "spartan7"), ("xa7s", "aspartan7"), ("xczu", "zynquplus"), ("xcau", "artixuplus"),
)

# Oldest Vivado this package is written for; later versions read it (as they read HLS cores of that age).
XILINX_VERSION = "2018.3"

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_VLNV_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
_VERSION = re.compile(r"(\d+)\.(\d+)\Z")

_HDL_FILE_TYPES = {".v": "verilogSource", ".vh": "verilogSource", ".sv": "systemVerilogSource",
                   ".svh": "systemVerilogSource", ".vhd": "vhdlSource", ".vhdl": "vhdlSource"}
_DATA_SUFFIXES = {".mem", ".hex", ".dat"}


class IpPackageError(RtlgenError, ValueError):
    """Bad IP options or ports; a ValueError for the API, an RtlgenError for the CLI."""


@dataclass(frozen=True)
class IpOptions:
    vendor: str = "rtlgen.org"
    library: str = "rtlgen"
    name: str = "rtlgen_accel"
    version: str = "1.0"
    part: str = "xc7z020clg400-1"
    clock_ns: float = 10.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise IpPackageError (a ValueError) with a one-line message naming the first bad option."""
        for option in ("vendor", "library"):
            value = getattr(self, option)
            if not isinstance(value, str) or not _VLNV_PART.match(value):
                raise IpPackageError(f"option {option}={value!r}: use letters, digits, '_', '.' or '-' "
                                     "(it is part of the core's vendor:library:name:version)")
        if not isinstance(self.name, str) or not _IDENTIFIER.match(self.name):
            raise IpPackageError(f"option name={self.name!r}: must be an identifier (a letter, then letters, "
                                 "digits or '_')")
        if not isinstance(self.version, str) or not _VERSION.match(self.version):
            raise IpPackageError(f"option version={self.version!r}: must be 'major.minor', e.g. '1.0'")
        if not isinstance(self.part, str) or not _VLNV_PART.match(self.part):
            raise IpPackageError(f"option part={self.part!r}: must be a Xilinx part name such as "
                                 "xc7z020clg400-1")
        try:
            clock_ok = float(self.clock_ns) > 0 and math.isfinite(float(self.clock_ns))
        except (TypeError, ValueError):
            clock_ok = False
        if not clock_ok:
            raise IpPackageError(f"option clock_ns={self.clock_ns!r}: must be a clock period in ns, > 0")

    @property
    def vlnv(self) -> str:
        return f"{self.vendor}:{self.library}:{self.name}:{self.version}"

    @property
    def version_tag(self) -> str:
        """'1.0' -> 'v1_0', as Vivado names xgui files and Component_Name."""
        major, minor = _VERSION.match(self.version).groups()
        return f"v{major}_{minor}"

    @property
    def component_name(self) -> str:
        return f"{self.name}_{self.version_tag}"

    @property
    def clock_mhz(self) -> float:
        return 1000.0 / float(self.clock_ns)


@dataclass(frozen=True)
class Port:
    name: str
    direction: str  # "in" | "out"
    width: int


def write_ip_package(out_dir: Path, *, top_name: str, ports: list[Port], hdl_files: list[str],
                     options: IpOptions, description: str = "", sim_models: list[str] = ()) -> list[Path]:
    """Write DIR/ip/{component.xml, xgui/, constraints/, NAME.core} and DIR/vivado/*; return the paths.

    `out_dir` is the build folder DIR; the HDL is already in DIR/ip/hdl/ and `hdl_files` are names relative
    to it (the top module `top_name` among them). `ports` are the top's actual ports. `sim_models` (relative
    to DIR/ip/, already there) are models of vendor primitives the HDL instantiates: not part of the IP
    (Vivado has the primitives), listed in the FuseSoC core for its Verilator lint target.
    """
    options.validate()
    out_dir = Path(out_dir)
    ip_dir = out_dir / "ip"
    if not _IDENTIFIER.match(top_name or ""):
        raise IpPackageError(f"top module name {top_name!r} is not a Verilog identifier")
    _check_hdl_files(ip_dir, hdl_files)
    port_map = _check_ports(ports)
    revision = core_revision(ip_dir / "hdl", hdl_files)
    description = description or (f"{options.name}: streaming dataflow accelerator generated by rtlgen "
                                  f"(AXI-Stream in {port_map['s_axis_tdata'].width} bits, "
                                  f"out {port_map['m_axis_tdata'].width} bits)")

    xgui_rel = f"xgui/{options.component_name}.tcl"
    ooc_rel = f"constraints/{options.name}_ooc.xdc"
    written: list[Path] = []

    def emit(rel: str, text: str) -> None:
        path = ip_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    emit(ooc_rel, _ooc_xdc(options))
    emit(xgui_rel, _xgui_tcl(options, port_map, revision))
    component = build_component(top_name=top_name, ports=ports, hdl_files=hdl_files, options=options,
                                description=description, revision=revision, xgui_file=xgui_rel,
                                ooc_file=ooc_rel)
    emit("component.xml", component)

    # Imported here: both modules build on IpOptions from this one.
    from rtlgen.fusesoc import core_file_text
    emit(f"{options.name}.core", core_file_text(top_name=top_name, hdl_files=[f"hdl/{f}" for f in hdl_files],
                                                ooc_xdc=ooc_rel, options=options, description=description,
                                                sim_models=list(sim_models)))

    from rtlgen.vivado_tcl import write_vivado_scripts
    written += write_vivado_scripts(out_dir / "vivado", ip_dir=ip_dir, options=options,
                                    in_width=port_map["s_axis_tdata"].width,
                                    out_width=port_map["m_axis_tdata"].width)
    return written


def core_revision(hdl_dir: Path, hdl_files: list[str]) -> int:
    """A positive 28-bit number from the HDL's names and bytes: same design, same revision."""
    digest = hashlib.sha256()
    for rel in sorted(hdl_files):
        digest.update(rel.encode() + b"\0")
        digest.update((Path(hdl_dir) / rel).read_bytes())
        digest.update(b"\0")
    return int(digest.hexdigest()[:7], 16) or 1


def _check_hdl_files(ip_dir: Path, hdl_files: list[str]) -> None:
    if not hdl_files:
        raise IpPackageError("no HDL files given for the IP package")
    for rel in hdl_files:
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts:
            raise IpPackageError(f"HDL file {rel!r} must be a path relative to DIR/ip/hdl")
        if p.suffix not in _HDL_FILE_TYPES and p.suffix not in _DATA_SUFFIXES:
            raise IpPackageError(f"HDL file {rel!r}: unknown kind of file (expected .v, .sv, .vhd or .mem)")
        full = ip_dir / "hdl" / p
        if not full.is_file():
            raise IpPackageError(f"HDL file {full} does not exist (write the Verilog before packaging)")


def _check_ports(ports: list[Port]) -> dict[str, Port]:
    by_name: dict[str, Port] = {}
    for port in ports:
        if port.name in by_name:
            raise IpPackageError(f"port {port.name} listed twice")
        if port.direction not in ("in", "out", "inout"):
            raise IpPackageError(f"port {port.name}: direction {port.direction!r} is not 'in' or 'out'")
        if not isinstance(port.width, int) or port.width < 1:
            raise IpPackageError(f"port {port.name}: width {port.width!r} must be a positive integer")
        by_name[port.name] = port
    expected = {CLOCK_PORT: "in", RESET_PORT: "in", **PLAIN_PORTS}
    for _, (_, pins) in AXIS_PORTS.items():
        expected.update({phys: direction for phys, direction in pins.values()})
    for name, direction in expected.items():
        port = by_name.get(name)
        if port is None and name in OPTIONAL_PORTS:
            continue
        if port is None:
            raise IpPackageError(f"the top level has no port {name} (required for the AXI-Stream IP)")
        if port.direction != direction:
            raise IpPackageError(f"port {name} is '{port.direction}', expected '{direction}'")
        if not name.endswith("_tdata") and port.width != 1:
            raise IpPackageError(f"port {name} is {port.width} bits wide, expected 1")
    for name in ("s_axis_tdata", "m_axis_tdata"):
        if by_name[name].width % 8:
            raise IpPackageError(f"port {name} is {by_name[name].width} bits; AXI-Stream TDATA must be a "
                                 "multiple of 8 bits (pad it at the top level)")
    return by_name


def supported_families(part: str) -> list[str]:
    families = list(SUPPORTED_FAMILIES)
    lowered = part.lower()
    for prefix, family in _PART_FAMILIES:
        if lowered.startswith(prefix) and family not in families:
            families.append(family)
    return families


# ---------------------------------------------------------------------------------------------------------
# component.xml

def _s(tag: str) -> str:
    return f"{{{SPIRIT_NS}}}{tag}"


def _x(tag: str) -> str:
    return f"{{{XILINX_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _parameter(parent: ET.Element, name: str, value: str, value_id: str, **value_attrs: str) -> None:
    param = _sub(parent, _s("parameter"))
    _sub(param, _s("name"), name)
    _sub(param, _s("value"), value, **{_s("id"): value_id}, **value_attrs)


def _bus_interface(parent: ET.Element, name: str, bus: tuple[str, str, str], mode: str,
                   port_maps: list[tuple[str, str]], params: list[tuple[str, str]]) -> None:
    """One spirit:busInterface; bus = (library, bus type name, abstraction name) under xilinx.com."""
    library, bus_name, abstraction = bus
    interface = _sub(parent, _s("busInterface"))
    _sub(interface, _s("name"), name)
    _sub(interface, _s("busType"), **{_s("vendor"): "xilinx.com", _s("library"): library,
                                      _s("name"): bus_name, _s("version"): "1.0"})
    _sub(interface, _s("abstractionType"), **{_s("vendor"): "xilinx.com", _s("library"): library,
                                              _s("name"): abstraction, _s("version"): "1.0"})
    _sub(interface, _s(mode))
    maps = _sub(interface, _s("portMaps"))
    for logical, physical in port_maps:
        port_map = _sub(maps, _s("portMap"))
        _sub(_sub(port_map, _s("logicalPort")), _s("name"), logical)
        _sub(_sub(port_map, _s("physicalPort")), _s("name"), physical)
    if params:
        plist = _sub(interface, _s("parameters"))
        for pname, value in params:
            _parameter(plist, pname, value, f"BUSIFPARAM_VALUE.{name.upper()}.{pname}")


SYNTH_VIEW = "xilinx_anylanguagesynthesis"
SIM_VIEW = "xilinx_anylanguagebehavioralsimulation"
GUI_VIEW = "xilinx_xpgui"


def build_component(*, top_name: str, ports: list[Port], hdl_files: list[str], options: IpOptions,
                    description: str, revision: int, xgui_file: str, ooc_file: str) -> str:
    """The text of component.xml (IP-XACT 1685-2009 with Xilinx extensions)."""
    ET.register_namespace("spirit", SPIRIT_NS)
    ET.register_namespace("xilinx", XILINX_NS)
    by_name = {p.name: p for p in ports}
    root = ET.Element(_s("component"))
    _sub(root, _s("vendor"), options.vendor)
    _sub(root, _s("library"), options.library)
    _sub(root, _s("name"), options.name)
    _sub(root, _s("version"), options.version)

    # Bus interfaces: the two streams, then clock and reset (as Vivado HLS orders them).
    interfaces = _sub(root, _s("busInterfaces"))
    for if_name, (mode, pins) in AXIS_PORTS.items():
        tdata = by_name[pins["TDATA"][0]]
        _bus_interface(interfaces, if_name, ("interface", "axis", "axis_rtl"), mode,
                       [(logical, phys) for logical, (phys, _) in pins.items() if phys in by_name],
                       [("TDATA_NUM_BYTES", str(tdata.width // 8))])
    # No FREQ_HZ: block designs propagate the frequency of whatever clock drives ap_clk.
    _bus_interface(interfaces, CLOCK_PORT, ("signal", "clock", "clock_rtl"), "slave", [("CLK", CLOCK_PORT)],
                   [("ASSOCIATED_BUSIF", ":".join(AXIS_PORTS)), ("ASSOCIATED_RESET", RESET_PORT)])
    _bus_interface(interfaces, RESET_PORT, ("signal", "reset", "reset_rtl"), "slave", [("RST", RESET_PORT)],
                   [("POLARITY", "ACTIVE_LOW")])

    model = _sub(root, _s("model"))
    views = _sub(model, _s("views"))
    for view, display, env in ((SYNTH_VIEW, "Synthesis", ":vivado.xilinx.com:synthesis"),
                               (SIM_VIEW, "Simulation", ":vivado.xilinx.com:simulation")):
        v = _sub(views, _s("view"))
        _sub(v, _s("name"), view)
        _sub(v, _s("displayName"), display)
        _sub(v, _s("envIdentifier"), env)
        _sub(v, _s("language"), "Verilog")
        _sub(v, _s("modelName"), top_name)
        _sub(_sub(v, _s("fileSetRef")), _s("localName"), f"{view}_view_fileset")
    v = _sub(views, _s("view"))
    _sub(v, _s("name"), GUI_VIEW)
    _sub(v, _s("displayName"), "UI Layout")
    _sub(v, _s("envIdentifier"), ":vivado.xilinx.com:xgui.ui")
    _sub(_sub(v, _s("fileSetRef")), _s("localName"), f"{GUI_VIEW}_view_fileset")

    port_list = _sub(model, _s("ports"))
    for port in ports:
        p = _sub(port_list, _s("port"))
        _sub(p, _s("name"), port.name)
        wire = _sub(p, _s("wire"))
        _sub(wire, _s("direction"), port.direction)
        if port.width > 1:
            vector = _sub(wire, _s("vector"))
            _sub(vector, _s("left"), str(port.width - 1), **{_s("format"): "long"})
            _sub(vector, _s("right"), "0", **{_s("format"): "long"})
        type_defs = _sub(wire, _s("wireTypeDefs"))
        type_def = _sub(type_defs, _s("wireTypeDef"))
        _sub(type_def, _s("typeName"), "wire")
        _sub(type_def, _s("viewNameRef"), SYNTH_VIEW)
        _sub(type_def, _s("viewNameRef"), SIM_VIEW)
        if port.name == "m_axis_tready":
            # Left unconnected in a block design, the output is never stalled (as Vivado's own cores do).
            driver = _sub(wire, _s("driver"))
            _sub(driver, _s("defaultValue"), "1", **{_s("format"): "long"})

    file_sets = _sub(root, _s("fileSets"))
    synth = _sub(file_sets, _s("fileSet"))
    _sub(synth, _s("name"), f"{SYNTH_VIEW}_view_fileset")
    ooc = _sub(synth, _s("file"))
    _sub(ooc, _s("name"), ooc_file)
    _sub(ooc, _s("userFileType"), "xdc")
    _sub(ooc, _s("userFileType"), "USED_IN_out_of_context")
    _hdl_file_entries(synth, hdl_files)
    sim = _sub(file_sets, _s("fileSet"))
    _sub(sim, _s("name"), f"{SIM_VIEW}_view_fileset")
    _hdl_file_entries(sim, hdl_files)
    gui = _sub(file_sets, _s("fileSet"))
    _sub(gui, _s("name"), f"{GUI_VIEW}_view_fileset")
    xgui = _sub(gui, _s("file"))
    _sub(xgui, _s("name"), xgui_file)
    _sub(xgui, _s("fileType"), "tclSource")
    _sub(xgui, _s("userFileType"), "XGUI_VERSION_2")

    _sub(root, _s("description"), description)
    params = _sub(root, _s("parameters"))
    component_name = _sub(params, _s("parameter"))
    _sub(component_name, _s("name"), "Component_Name")
    _sub(component_name, _s("value"), options.component_name,
         **{_s("resolve"): "user", _s("id"): "PARAM_VALUE.Component_Name", _s("order"): "1"})

    extensions = _sub(_sub(root, _s("vendorExtensions")), _x("coreExtensions"))
    families = _sub(extensions, _x("supportedFamilies"))
    for family in supported_families(options.part):
        _sub(families, _x("family"), family, **{_x("lifeCycle"): "Production"})
    _sub(_sub(extensions, _x("taxonomies")), _x("taxonomy"), "/UserIP")
    _sub(extensions, _x("displayName"), options.component_name)
    _sub(extensions, _x("definitionSource"), "package_project")
    _sub(extensions, _x("coreRevision"), str(revision))
    _sub(extensions, _x("coreCreationDateTime"), _creation_time())
    packaging = _sub(root.find(_s("vendorExtensions")), _x("packagingInfo"))
    _sub(packaging, _x("xilinxVersion"), XILINX_VERSION)

    ET.indent(root, space="  ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def _hdl_file_entries(file_set: ET.Element, hdl_files: list[str]) -> None:
    for rel in hdl_files:
        entry = _sub(file_set, _s("file"))
        _sub(entry, _s("name"), f"hdl/{rel}")
        suffix = Path(rel).suffix
        if suffix in _HDL_FILE_TYPES:
            _sub(entry, _s("fileType"), _HDL_FILE_TYPES[suffix])
            if suffix in (".vh", ".svh"):
                _sub(entry, _s("isIncludeFile"), "true")
        else:
            _sub(entry, _s("userFileType"), "mem")


def _creation_time() -> str:
    # SOURCE_DATE_EPOCH makes the package byte-reproducible where a build system asks for it.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = int(epoch) if epoch and epoch.isdigit() else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


# ---------------------------------------------------------------------------------------------------------
# The small files next to component.xml

def _ooc_xdc(options: IpOptions) -> str:
    return (f"# Out-of-context clock for {options.vlnv} (used only when Vivado synthesises the core alone).\n"
            f"# From --clock-ns {float(options.clock_ns):g}; in a block design the clock comes from ap_clk's source.\n"
            f"create_clock -name {CLOCK_PORT} -period {float(options.clock_ns):.3f} [get_ports {CLOCK_PORT}]\n")


def _xgui_tcl(options: IpOptions, ports: dict[str, Port], revision: int) -> str:
    s_last = (", TLAST on the last word of each frame (a short or long frame is realigned and raises error)"
              if "s_axis_tlast" in ports else " (no TLAST: built with --ignore-input-tlast)")
    about = (f"{options.name} {options.version} (core revision {revision}), generated by rtlgen.\n"
             f"s_axis: TDATA {ports['s_axis_tdata'].width} bits{s_last}. "
             f"m_axis: TDATA {ports['m_axis_tdata'].width} bits, TLAST on the last word of each frame. "
             "error: high from a damaged input frame until reset.\n"
             "The core has no parameters: rebuild with rtlgen to change it.")
    return ("# Definitional proc to organize widgets for parameters.\n"
            "proc init_gui { IPINST } {\n"
            '  ipgui::add_param $IPINST -name "Component_Name"\n'
            "  #Adding Page\n"
            '  set Page_0 [ipgui::add_page $IPINST -name "Page 0"]\n'
            '  ipgui::add_static_text $IPINST -name "About" -parent ${Page_0} -text {' + about + "}\n"
            "}\n")

