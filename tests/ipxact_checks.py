"""Checks of a built Vivado IP folder that need no Vivado; shared by the IP-XACT tests and the end-to-end
builds (every model that builds must pass them).

- component.xml validates against the IEEE 1685-2009 schema (offline: includes resolve to ../shared/ipxact);
- every file it names exists, by a relative path inside DIR/ip;
- its ports equal the top-level Verilog's, by name, direction and width, as Verilator reads the Verilog;
- ASSOCIATED_BUSIF names existing interfaces; TDATA widths are whole bytes and match TDATA_NUM_BYTES;
  every s_axis_*/m_axis_* port (TLAST of both streams included) is mapped by its interface, under its own
  name; `error` is a 1-bit output in no interface.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from rtlgen.ipxact import Port
from rtlgen.verilog_ports import read_verilog_ports

lxml_etree = pytest.importorskip("lxml.etree")

SHARED = Path(__file__).resolve().parents[2] / "shared"
SCHEMA_DIR = SHARED / "ipxact" / "ieee-1685-2009"
EXAMPLES_DIR = SHARED / "ipxact" / "examples"
SPIRIT = "http://www.spiritconsortium.org/XMLSchema/SPIRIT/1685-2009"
XILINX = "http://www.xilinx.com"
NS = {"spirit": SPIRIT, "xilinx": XILINX}


def component(root: Path):
    return lxml_etree.parse(str(root / "ip" / "component.xml"))


def text(node, path: str) -> str:
    found = node.find(path, NS)
    assert found is not None, f"{path} missing"
    return (found.text or "").strip()


class LocalSchemaResolver(lxml_etree.Resolver):
    """Resolve every schema include/import to the local copy: validation never touches the network."""

    def resolve(self, url, public_id, context):
        local = SCHEMA_DIR / Path(url.split("?")[0]).name
        if local.is_file():
            return self.resolve_filename(str(local), context)
        raise AssertionError(f"schema wants {url}, which is not in {SCHEMA_DIR}")


def load_schema():
    if not (SCHEMA_DIR / "component.xsd").is_file():
        pytest.skip(f"IEEE 1685-2009 schema not found in {SCHEMA_DIR} (../shared/ipxact beside the checkout)")
    parser = lxml_etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(LocalSchemaResolver())
    return lxml_etree.XMLSchema(lxml_etree.parse(str(SCHEMA_DIR / "component.xsd"), parser))


def component_ports(doc) -> list[Port]:
    ports = []
    for port in doc.iterfind(".//spirit:model/spirit:ports/spirit:port", NS):
        vector = port.find("spirit:wire/spirit:vector", NS)
        width = 1
        if vector is not None:
            width = abs(int(text(vector, "spirit:left")) - int(text(vector, "spirit:right"))) + 1
        ports.append(Port(text(port, "spirit:name"), text(port, "spirit:wire/spirit:direction"), width))
    return ports


def check_schema(root: Path) -> None:
    schema = load_schema()
    doc = component(root)
    assert schema.validate(doc), "\n".join(str(e) for e in schema.error_log)
    assert doc.getroot().tag == f"{{{SPIRIT}}}component"  # the spirit namespace, the only one Vivado reads


def check_named_files(root: Path) -> None:
    names = [n.text for n in component(root).iterfind(".//spirit:fileSets//spirit:file/spirit:name", NS)]
    assert names
    for name in names:
        assert not Path(name).is_absolute() and ".." not in Path(name).parts, name
        assert (root / "ip" / name).is_file(), name


def check_ports_match_verilog(root: Path) -> dict[str, int]:
    doc = component(root)
    top = text(doc, ".//spirit:view/spirit:modelName")
    hdl = [root / "ip" / n.text for n in doc.iterfind(
        ".//spirit:fileSet[spirit:name='xilinx_anylanguagesynthesis_view_fileset']/spirit:file/spirit:name", NS)
        if n.text.endswith(".v")]
    from_verilog = read_verilog_ports(hdl, top)
    in_component = component_ports(doc)
    assert len(in_component) == len({p.name for p in in_component})
    # Same names, directions and widths (Vivado matches ports by name; their order does not matter).
    assert {p.name: p for p in in_component} == {p.name: p for p in from_verilog}
    return {p.name: p.width for p in from_verilog}


def bus_interfaces(doc) -> dict:
    return {text(b, "spirit:name"): b for b in doc.iterfind(".//spirit:busInterfaces/spirit:busInterface", NS)}


def interface_params(interface) -> dict[str, str]:
    return {text(p, "spirit:name"): text(p, "spirit:value")
            for p in interface.iterfind("spirit:parameters/spirit:parameter", NS)}


def check_stream_interfaces(root: Path) -> None:
    doc = component(root)
    interfaces = bus_interfaces(doc)
    clock = interface_params(interfaces["ap_clk"])
    assert set(clock["ASSOCIATED_BUSIF"].split(":")) == {"s_axis", "m_axis"}
    assert set(clock["ASSOCIATED_BUSIF"].split(":")) <= set(interfaces)
    assert clock["ASSOCIATED_RESET"] in interfaces
    ports = {p.name: p for p in component_ports(doc)}
    widths = {name: p.width for name, p in ports.items()}
    for name, tdata in (("s_axis", "s_axis_tdata"), ("m_axis", "m_axis_tdata")):
        assert widths[tdata] % 8 == 0
        assert int(interface_params(interfaces[name])["TDATA_NUM_BYTES"]) * 8 == widths[tdata]
        mapped = {text(m, "spirit:logicalPort/spirit:name"): text(m, "spirit:physicalPort/spirit:name")
                  for m in interfaces[name].iterfind("spirit:portMaps/spirit:portMap", NS)}
        own = {port for port in ports if port.startswith(f"{name}_")}
        assert set(mapped.values()) == own, (name, mapped, own)
        assert all(physical == f"{name}_{logical.lower()}" for logical, physical in mapped.items()), mapped
    assert "TLAST" in {text(m, "spirit:logicalPort/spirit:name")
                       for m in interfaces["m_axis"].iterfind("spirit:portMaps/spirit:portMap", NS)}
    assert (ports["error"].direction, ports["error"].width) == ("out", 1)


def check_ip_folder(root: Path) -> None:
    """All of the above on one build folder."""
    check_schema(root)
    check_named_files(root)
    check_ports_match_verilog(root)
    check_stream_interfaces(root)
