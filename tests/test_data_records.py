"""DatasetSplit.report_warnings: the one way train and eval print label problems."""

from yolo4.data.records import DatasetSplit


def test_report_warnings_prints_the_first_and_counts_the_rest():
    split = DatasetSplit(names=["a"], records=[], warnings=["labels/%d.txt:1: bad" % i for i in range(13)])
    lines = []
    split.report_warnings(lines.append, "val", limit=10)
    assert lines[:10] == ["warning: labels/%d.txt:1: bad" % i for i in range(10)]
    assert lines[10:] == ["warning: ... and 3 more label problems in the val split"]
    quiet = []
    DatasetSplit(names=["a"], records=[]).report_warnings(quiet.append)
    assert quiet == []
