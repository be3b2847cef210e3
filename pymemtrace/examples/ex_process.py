"""Example: this process's RSS sampled in the background, with a label."""
import logging
import sys
import time

from pymemtrace import process


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with process.log_process(interval=0.1, log_level=logging.INFO):
        blocks = []
        for i in range(5):
            blocks.append(b"x" * (8 * 1024 ** 2))
            process.add_message_to_queue(f"allocated block {i}")
            time.sleep(0.15)
        blocks.clear()
        time.sleep(0.15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
