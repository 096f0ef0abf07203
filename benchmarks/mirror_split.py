"""In-process CPU time of one corpus case, split into the CPU tier's mirror and the rest.

Usage: python benchmarks/mirror_split.py <case>   (a case folder of /work/shared/reference/corpus)

Runs the case's command in this process with CpuTier.mirror wrapped by a process-time counter
and prints total, mirror and rest CPU seconds, the number of mirrors and whether stdout matches
the corpus stdout.txt (blank lines ignored).
"""

import contextlib
import io
import os
import shlex
import sys
import time

CORPUS = "/work/shared/reference/corpus"


def main(case: str) -> None:
    os.chdir("/work/shared/reference/upstream")
    os.environ["CASE_DIR"] = f"../corpus/{case}"
    out = os.environ["OUT_DIR"] = f"/tmp/mirror-split-{case}-{os.getpid()}"
    os.makedirs(out, exist_ok=True)
    with open(f"{CORPUS}/{case}/cmd.txt") as f:
        argv = shlex.split(os.path.expandvars(f.read().strip()))[1:]
    from blis_core import cli, cputier
    spent = [0.0, 0]
    mirror = cputier.CpuTier.mirror

    def timed(self, batch):
        t = time.process_time()
        mirror(self, batch)
        spent[0] += time.process_time() - t
        spent[1] += 1

    cputier.CpuTier.mirror = timed
    start = time.process_time()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            cli.main(argv)
    except SystemExit:
        pass
    total = time.process_time() - start
    with open(f"{CORPUS}/{case}/stdout.txt") as f:
        expected = [line for line in f.read().splitlines() if line.strip()]
    got = [line for line in buf.getvalue().splitlines() if line.strip()]
    print(f"{case}: total {total:.2f}s mirror {spent[0]:.2f}s rest {total - spent[0]:.2f}s "
          f"mirrors {spent[1]} stdout {'MATCH' if got == expected else 'DIFF'}")


if __name__ == "__main__":
    main(sys.argv[1])
