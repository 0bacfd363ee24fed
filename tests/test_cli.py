"""The `flowomni` command: every subcommand exists, errors are named, bench runs benchmarks."""

import pytest

from flowomni.cli import SUBCOMMANDS, main


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0 and "usage: flowomni" in capsys.readouterr().out


def test_bench_names_unknown_benchmarks_and_runs_known_ones(capsys):
    assert main(["bench", "nope"]) == 2
    assert "latency" in capsys.readouterr().err
    assert main(["bench", "latency", "--help"]) == 0
    assert "First-packet latency" in capsys.readouterr().out


def test_bad_config_is_named_with_exit_code_2(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("model:\n  flow:\n    stepz: 4\n")
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    assert "stepz" in capsys.readouterr().err
