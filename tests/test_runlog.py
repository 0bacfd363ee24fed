"""RunLog: metrics lines, a resume that drops what came after, and two runs on one plot."""

from flowomni.training.runlog import RunLog, read_records


def test_resume_drops_later_lines_and_runs_compare(tmp_path):
    a = RunLog(tmp_path / "a", tensorboard=False)
    for step in (500, 1000, 1500):
        a.log(step, "valid", {"text_ce": 1.0 / step})
    resumed = RunLog(tmp_path / "a", tensorboard=False, resume_step=1000)
    assert [r["step"] for r in resumed.records()] == [500, 1000]
    b = RunLog(tmp_path / "b", tensorboard=False)
    b.log(500, "valid", {"text_ce": 0.5})
    b.log(500, "train", {"text_ce": 0.4})
    assert read_records(tmp_path / "missing.jsonl") == []
    RunLog.compare({"continuous": tmp_path / "a", "discrete": tmp_path / "b"}, tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 5000
