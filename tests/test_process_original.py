"""The original pymemtrace's process API: the context's value has
add_message_to_queue()."""
import json
import logging

from pymemtrace import process


def stops_and_labels(caplog):
    msgs = [r.getMessage() for r in caplog.records if "ProcessLoggingThread-JSON" in r.getMessage()]
    labels = [json.loads(m.split(" ", 1)[1]).get("label") for m in msgs]
    return msgs, [x for x in labels if x]


def test_context_value_has_add_message_to_queue(caplog):
    with caplog.at_level(logging.INFO, logger="pymemtrace.process"):
        with process.log_process(interval=0.05) as proc:
            proc.add_message_to_queue("from the value")
            import time
            time.sleep(0.3)
    msgs, labels = stops_and_labels(caplog)
    assert "from the value" in labels
    assert msgs[-1].startswith("ProcessLoggingThread-JSON-STOP")

