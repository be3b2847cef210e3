"""The cPyMemTrace log reader: the seed's format, damaged logs, odd file names."""
import pathlib

import pytest

from pymemtrace.readers import cpmt_log

FIX = pathlib.Path(__file__).parent / "fixtures" / "cpmt"


def test_reads_the_seeds_profile_log():
    log = cpmt_log.read(FIX / "seed-profile.log")
    assert log.messages == []
    assert len(log.records) == 16
    assert [r.kind for r in log.records[:4]] == ["NEXT", "NEXT", "PREV", "NEXT"]
    first = log.records[0]
    assert (first.event, first.d_event, first.what, first.file, first.line, first.function,
            first.rss, first.d_rss) == (0, 0, "CALL", "test.py", 9, "create_string", 9101312, 9101312)
    assert first.clock == pytest.approx(0.066718)
    prev = log.records[2]
    assert (prev.kind, prev.event, prev.d_event, prev.d_rss) == ("PREV", 4, 3, 0)
    # every +1 MiB step is on the RETURN of create_string, as the seed shows
    steps = [r for r in log.next_records[1:]]
    assert all(r.what == "RETURN" and r.function == "create_string" and r.d_rss == 1052672
               for r in steps)
    assert not log.truncated


def test_largest_and_by_function_leave_out_the_start_row():
    log = cpmt_log.read(FIX / "seed-profile.log")
    top = log.largest(3)
    assert len(top) == 3
    assert all(r.d_rss == 1052672 and r.event != 0 for r in top)
    (fn, f, d, n), = log.by_function()
    assert (fn, f, d, n) == ("create_string", "test.py", 8 * 1052672, 8)


def test_reads_the_seeds_every_event_log():
    log = cpmt_log.read(FIX / "seed-profile0.log")
    whats = {r.what for r in log.records}
    assert whats == {"CALL", "RETURN", "C_CALL", "C_RETURN"}
    assert all(r.kind == "NEXT" for r in log.records)
    assert [r.function for r in log.records if r.what == "C_CALL"][:1] == ["append"]
    assert log.records[-1].event == 65


def test_message_notes_and_spaces_in_file_names(tmp_path):
    text = (
        "My message\n"
        "second line of it\n"
        "      Event dEvent  Clock    What     File    #line Function      RSS           dRSS\n"
        "NEXT: 0     +0      0.000100 CALL     <frozen importlib._bootstrap> #1002 _find_and_load  9101312      9101312\n"
        "A message written during the run\n"
        "NEXT: 7     +7      0.000200 C_EXCEPTION x.py #   3 <lambda>  9000000      -101312\n"
    )
    p = tmp_path / "a.log"
    p.write_text(text)
    log = cpmt_log.read(p)
    assert log.messages == ["My message", "second line of it"]
    assert log.records[0].file == "<frozen importlib._bootstrap>"
    assert log.records[0].line == 1002
    assert log.records[1].what == "C_EXCEPTION" and log.records[1].d_rss == -101312
    assert log.notes == [(5, "A message written during the run")]
    assert not log.truncated


def test_truncated_last_line_is_reported_not_parsed(tmp_path):
    full = (FIX / "seed-profile.log").read_text()
    cut = full[: full.rindex("create_string")]  # cut mid-row, as a crash would
    p = tmp_path / "cut.log"
    p.write_text(cut)
    log = cpmt_log.read(p)
    assert log.truncated
    assert len(log.records) == 15
    assert not log.complete


def test_not_a_log(tmp_path):
    p = tmp_path / "x.log"
    p.write_text("hello\nworld\n")
    with pytest.raises(ValueError, match="not a cPyMemTrace log"):
        cpmt_log.read(p)
    with pytest.raises(FileNotFoundError):
        cpmt_log.read(tmp_path / "missing.log")


def test_complete_only_with_the_end_line(tmp_path):
    head = (FIX / "seed-profile.log").read_text()
    assert not cpmt_log.read(FIX / "seed-profile.log").complete   # the seed shows no END line
    p = tmp_path / "a.log"
    p.write_text(head + "# DETACH event=30 clock=0.071300 depth=2 log=inner.log\n"
                        "# RESUME event=30 clock=0.071400\n"
                        "# END events=66 clock=0.084600 rss=9035776 rss_peak=17326080 exit=ok\n")
    log = cpmt_log.read(p)
    assert log.complete
    assert [t.split()[1] for _, t in log.notes] == ["DETACH", "RESUME", "END"]
    p.write_text(head + "# END of something else\n")
    assert not cpmt_log.read(p).complete


def test_refuses_devices_rather_than_reading_forever():
    with pytest.raises(ValueError, match="not a regular file"):
        cpmt_log.read("/dev/zero")


def test_rows_share_their_names():
    """Records of one log hold one copy of each name (a fifth of the memory)."""
    log = cpmt_log.read(FIX / "seed-profile.log")
    assert log.records[1].function is log.records[3].function
    assert log.records[1].file is log.records[2].file
    assert log.records[1].what is log.records[3].what
