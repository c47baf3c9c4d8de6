"""hw.verilog_merge: part-select assignments merged into one concatenation only where every
bit is driven exactly once by a part of a width it can check; the same netlist (Yosys
proves the Sequencer's two Verilog texts equivalent)."""

import pytest

from sparq.hw.export import CONFIGS
from sparq.hw.synth import YOSYS, _rel, _run
from sparq.hw.verilog_merge import merge
from sparq.sim.runner import BUILD

HEAD = """module top(a, b, o);
  input [3:0] a;
  input [1:0] b;
  output [7:0] o;
  wire [7:0] o;
  wire \\$1 ;
  wire [1:0] \\$2 ;
  reg [7:0] mem [3:0];
"""


def test_parts_become_one_concatenation():
    text = HEAD + """  assign o[3:0] = a;
  assign o[5:4] = \\$2 ;
  assign o[6] = \\$1 ;
  assign o[7] = 1'h0;
endmodule
"""
    out = merge(text)
    assert "  assign o = { 1'h0 , \\$1 , \\$2 , a  };" in out
    assert out.count("assign") == 1 and out.startswith(HEAD)


@pytest.mark.parametrize("body, why", [
    ("  assign o[3:0] = a;\n  assign o[7:5] = {b, 1'h0};\n", "bit 4 undriven"),
    ("  assign o[3:0] = a;\n  assign o[7:3] = {a, 1'h0};\n", "bit 3 driven twice"),
    ("  assign o[3:0] = a;\n  assign o[7:4] = b;\n", "b is narrower than the part"),
    ("  assign o[3:0] = a;\n  assign o[7:4] = a + b;\n", "an expression it does not size"),
    ("  assign o[3:0] = a;\n  assign o[7:4] = a;\n  assign o = 8'h00;\n", "a whole assign"),
    ("  assign o[0] = mem[2];\n  assign o[7:1] = 7'h00;\n", "a memory word, not a bit"),
    ("  assign o[0] = a[4];\n  assign o[7:1] = 7'h00;\n", "a select outside a's range"),
])
def test_anything_unchecked_is_left_as_is(body, why):
    text = HEAD + body + "endmodule\n"
    assert merge(text) == text, why


def test_names_are_local_to_a_module():
    """``\\$2`` is 2 bits wide in one module and 1 bit in the next: each is sized in its own."""
    second = """module other(o);
  output [2:0] o;
  wire [2:0] o;
  wire \\$2 ;
  wire [1:0] \\$3 ;
  assign o[0] = \\$2 ;
  assign o[2:1] = \\$3 ;
endmodule
"""
    text = HEAD + "  assign o[3:0] = a;\n  assign o[7:4] = {\\$2 , \\$2 };\nendmodule\n" + second
    out = merge(text)
    assert "assign o = { {\\$2 , \\$2 } , a  };" in out
    assert "assign o = { \\$3 , \\$2  };" in out


@pytest.mark.long  # (20 s of Yosys; every RTL test on Icarus checks the merge's results)
def test_sequencer_verilog_is_the_same_netlist():
    """Yosys' equivalence check (equiv_make, equiv_struct, equiv_simple) of the Sequencer's
    Verilog as Amaranth writes it and as merged (36 assignments fewer)."""
    from amaranth.back import verilog

    cls, params = CONFIGS["sequencer_small"]
    text = verilog.convert(cls(**params), name="top", emit_src=False)
    merged = merge(text)
    assert merged.count("assign") < text.count("assign")
    # under build/ (the WebAssembly Yosys does not see /tmp), paths relative to the root
    folder = BUILD / "verilog_merge"
    folder.mkdir(parents=True, exist_ok=True)
    prep = "hierarchy -top top; proc; flatten; memory -nomap; opt_clean"
    for tag, t in (("gold", text), ("gate", merged)):
        (folder / f"{tag}.v").write_text(t)
        _run([*YOSYS, "-q", "-p", f"read_verilog {_rel(folder / f'{tag}.v')}; {prep}; "
              f"rename top {tag}; write_rtlil {_rel(folder / f'{tag}.il')}"],
             folder / f"{tag}.log")
    # (hw.synth._run raises, quoting Yosys' log, where the equivalence is not proven)
    _run([*YOSYS, "-q", "-p", f"read_rtlil {_rel(folder / 'gold.il')}; "
          f"read_rtlil {_rel(folder / 'gate.il')}; memory_map; equiv_make gold gate eq; "
          "hierarchy -top eq; equiv_struct; equiv_simple; equiv_status -assert"],
         folder / "equiv.log")
