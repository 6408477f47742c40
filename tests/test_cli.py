import shutil

from benchmark.cli import main


def test_run_prints_a_leaderboard_and_writes_it(tiny_sweep, tmp_path, capsys):
    shutil.copytree(tiny_sweep / "runs", tmp_path / "runs")
    results = tmp_path / "results"
    argv = ["run", str(tiny_sweep / "tiny.yaml"), "--out", str(tmp_path / "runs")]
    code = main([*argv, "--results", str(results), "--no-progress", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "3 of 3 runs already recorded" in out
    assert "optdigits→mnist" in out and "source_only" in out and "teacher" in out
    board = (results / "leaderboard.md").read_text()
    assert "| kd " in board and "Model selection: training-domain validation" in board
    assert (results / "leaderboard.csv").is_file() and (results / "records.csv").is_file()


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["run", "quik"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xdkd: error: unknown suite 'quik'; did you mean 'quick'?")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["run", "quick", "--set", "methods=[kdd]"]) == 2
    assert "did you mean 'kd'?" in capsys.readouterr().err
    assert main(["run", "quick", "--device", "gpu0"]) == 2
    assert "--device 'gpu0' is not a device" in capsys.readouterr().err


def test_datasets_list_and_show(tmp_path, capsys):
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("mnist", "optdigits", "mnistm", "syndigits"))
    out = tmp_path / "grid.png"
    assert main(["datasets", "show", "mnistm", "--out", str(out), "--count", "16"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_backbones_and_methods_listings(capsys):
    assert main(["backbones", "resnet1?"]) == 0
    assert "resnet18" in capsys.readouterr().out.split()
    assert main(["methods"]) == 0
    assert "Hinton et al. 2015" in capsys.readouterr().out


def test_help_explains_run_options(capsys):
    try:
        main(["run", "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in ("--device", "--out", "--set", "--results"))
