"""``python peak.py REPORT -m MODULE ARGS...``: run a module as ``python -m`` would, and write
its peak resident memory (VmHWM, in kB) to REPORT when it exits.

The parent's wait4 cannot give it: Linux carries the parent's peak into a forked child's
ru_maxrss, and the bench's own process is large.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def peak_kilobytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    report, flag, module, *arguments = sys.argv[1:]
    if flag != "-m":
        raise SystemExit(__doc__)
    atexit.register(lambda: Path(report).write_text(str(peak_kilobytes())))
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
