"""mlkit.runtime: ``keep_freed_memory`` makes the process keep the memory it frees."""
import platform
import subprocess
import sys
import textwrap

import pytest

LIBC, LIBC_VERSION = platform.libc_ver()
# mallinfo2, which the probe reads, came with glibc 2.33
GLIBC = (sys.platform.startswith("linux") and LIBC == "glibc"
         and tuple(int(p) for p in LIBC_VERSION.split(".")[:2]) >= (2, 33))

# Runs in a fresh process: the allocator's state there depends on nothing else the tests did.
# Six 16 MB tensors, then freed: where did their memory come from, and where did it go?
PROBE = textwrap.dedent("""
    import ctypes, sys
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks",
                    "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                    "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    import torch
    if sys.argv[1] == "keep":
        from mlkit.runtime import keep_freed_memory
        assert keep_freed_memory()
    tensors = [torch.ones(4 * 2**20) for _ in range(6)]   # 16 MB each
    alive = libc.mallinfo2()
    del tensors
    freed = libc.mallinfo2()
    print(alive.hblkhd >> 20, freed.fordblks >> 20)       # MB mapped apart, MB kept free
""")


def probe(setting):
    out = subprocess.run([sys.executable, "-c", PROBE, setting], capture_output=True,
                         text=True, check=True).stdout.split()
    return {"mapped_mb": int(out[0]), "kept_free_mb": int(out[1])}


@pytest.mark.skipif(not GLIBC, reason="needs glibc 2.33+ (keep_freed_memory tunes glibc only)")
def test_freed_memory_stays_with_the_process_for_reuse():
    plain, kept = probe("default"), probe("keep")
    # glibc's defaults: the first large blocks are mapped apart and go back to the system
    assert plain["mapped_mb"] >= 90 and plain["kept_free_mb"] < 16, plain
    # with keep_freed_memory they come from the heap, and stay there once freed
    assert kept["mapped_mb"] < 16 and kept["kept_free_mb"] >= 96, kept
