"""A stand-in for the runner's child that crashes (SIGSEGV) right after the runtime's import.

Used by test_runner to check that a model crashing its process ends the run with a reason.
"""

from __future__ import annotations

import ctypes
import os
import sys

from validators.runtime.frames import read_frame, write_frame

if __name__ == "__main__":
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    read_frame(sys.stdin.buffer, max_payload=1 << 30)
    write_frame(out, {"ok": True, "stage": "imported"})
    ctypes.string_at(0)  # reading address 0: a segmentation fault, as a buggy kernel would
