"""Demo of ``pymemtrace process``: the seed's example, scaled to run in a few
seconds, logged to a file, then tabulated and plotted.

Run by ``make demo`` (in demo-output/), or directly:
``python examples/demo_process.py``.
"""
import logging
import os
import random
import subprocess
import sys
import time

from pymemtrace import process
from pymemtrace.readers import process_log
from pymemtrace.reporters import process as process_reporter

LOG = "demo_process.log"
CMD_LOG = "demo_process_command.jsonl"
PLOTS = "demo_process_plots"


def workload() -> None:
    """The seed's example with 8-40 MiB strings and ~0.2 s sleeps."""
    logger = logging.getLogger("demo_process")
    logger.info('Demonstration of logging a process')
    with process.log_process(interval=0.1, log_level=logger.getEffectiveLevel()):
        for i in range(8):
            size = random.randint(8, 8 + 32) * 1024 ** 2
            # Add a message to report in the next process write.
            process.add_message_to_queue(f'String of {size:,d} bytes')
            s = ' ' * size
            time.sleep(0.15 + random.random() / 10)
            del s
            time.sleep(0.05 + random.random() / 20)


def main() -> int:
    random.seed(1234)
    root = logging.getLogger()
    handler = logging.FileHandler(LOG, mode="w")
    handler.setFormatter(logging.Formatter(
        '%(asctime)s - %(filename)s#%(lineno)d - %(process)5d'
        ' - (%(threadName)-10s) - %(levelname)-8s - %(message)s'))
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        workload()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()

    log = process_log.read_log(LOG)
    print(f"The seed's example (scaled down) logged {len(log.records)} records to {os.path.abspath(LOG)}:")
    with open(LOG) as f:
        lines = f.read().splitlines()
    for line in lines[:3] + ["..."] + lines[-1:]:
        print("  " + (line if len(line) < 200 else line[:197] + "..."))
    print("\nTable ('pymemtrace process table demo_process.log'):\n")
    process_reporter.table(log, sys.stdout)
    print("\nPlot ('pymemtrace process plot demo_process.log -o demo_process_plots'):")
    try:
        dat, plt, png = process_reporter.write_gnuplot(log, PLOTS, "demo_process",
                                                     "The seed's process example (scaled down)")
    except RuntimeError as err:
        print(f"  gnuplot failed: {err}")
        dat = plt = png = None
    for path in (dat, plt, png):
        if path:
            print(f"  wrote {os.path.abspath(path)}")
    if dat and not png:
        print("  gnuplot not installed: the .plt script draws the PNG where it is")
    try:
        mpl = process_reporter.plot_matplotlib(log, os.path.join(PLOTS, "demo_process.mpl.png"),
                                             "The seed's process example (scaled down)")
        print(f"  wrote {os.path.abspath(mpl)}")
    except ImportError:
        print("  matplotlib not installed: no matplotlib PNG")

    # Any process, from the command line: a child that grows in three steps.
    child = ("import time\n"
             "blocks = []\n"
             "for i in range(3):\n"
             "    blocks.append(bytearray(20 * 2**20)); time.sleep(0.25)\n")
    cmd = [sys.executable, "-m", "pymemtrace", "process", "-i", "0.05", "-o", CMD_LOG,
           "--", sys.executable, "-c", child]
    print("\nAny process from the command line:\n  $ pymemtrace process -i 0.05 -o "
          f"{CMD_LOG} -- python -c '<grow by 20 MiB three times>'")
    r = subprocess.run(cmd, capture_output=True, text=True)
    print("  " + r.stderr.strip().replace("\n", "\n  ") + f"  [exit code {r.returncode}]")
    cmd_log = process_log.read_log(CMD_LOG)
    rss = [s.mem("rss") for s in cmd_log.samples]
    print(f"  {len(cmd_log.samples)} samples, RSS from {int(min(rss)):,d} to {int(max(rss)):,d} bytes; "
          f"'pymemtrace process table {CMD_LOG}' tabulates it.")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
