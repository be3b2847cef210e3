"""Example: a function decorated with process.log_process_dec logs this
process's memory every 0.1 s while it runs (START, samples, STOP)."""
import logging
import sys
import time

from pymemtrace import process

logger = logging.getLogger(__name__)


@process.log_process_dec(interval=0.1, log_level=logging.INFO)
def build_and_drop(count: int = 4, size: int = 16 * 1024 ** 2) -> int:
    """Hold *count* strings of *size* bytes, then drop them one by one."""
    held = []
    for i in range(count):
        held.append(" " * size)
        process.add_message_to_queue(f"holding {i + 1} x {size:,d} bytes")
        time.sleep(0.15)
    while held:
        held.pop()
        time.sleep(0.1)
    return count * size


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s - %(process)5d - (%(threadName)-10s) - %(levelname)-8s - %(message)s")
    logger.info("Demonstration of log_process_dec")
    total = build_and_drop()
    logger.info("build_and_drop() held %d bytes in all", total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
