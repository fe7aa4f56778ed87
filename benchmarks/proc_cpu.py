"""CPU seconds from /proc: a server process's, its main thread's, the machine's, and its waits for a core.

On 2 shared cores, wall-clock figures drift with other people's work; what each
process took, and how long the server's threads were ready but had no core,
says where the time went. benchmarks/admission.py and refusal_cost.py read it
before and after each point.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class CpuSeconds(NamedTuple):
    server: float  # the process, every thread
    loop: float  # its main thread: in `serve start`, the event loop's
    machine: float  # every core, everything running (other people's work included)
    waited: float  # the process's threads ready to run but waiting for a core (schedstat)


def cpu_seconds(pid: int) -> CpuSeconds:
    """Seconds used so far (since boot, or since the process started)."""
    tick = os.sysconf("SC_CLK_TCK")

    def process(path: str) -> float:  # utime + stime, the 14th and 15th fields (the name may hold spaces)
        fields = Path(path).read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / tick

    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(cpu[:8]) - cpu[3] - cpu[4]  # user to steal, less idle and iowait (guest time is in user already)
    waited = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            waited += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[1])
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return CpuSeconds(process(f"/proc/{pid}/stat"), process(f"/proc/{pid}/task/{pid}/stat"), busy / tick,
                      waited / 1e9)
