"""``langevin-md analyze``'s run-folder half (langevin_md.run.analyze)."""

from langevin_md.run.analyze import analyze_run



def check_files(rep, names):
    for name in names:
        path = rep.output_dir / name
        assert path.is_file() and path.stat().st_size > 0, name


def test_analyze_run_on_a_run_folder(tmp_path, capsys):
    from langevin_md.run.config import parse_config
    from langevin_md.run.folder import create_run
    from langevin_md.run.session import execute_run as execute

    cfg = parse_config({"system": {"name": "harmonic", "dim": 1},
                        "integrator": {"name": "mala", "step_size": 0.5},
                        "sampler": {"n_steps": 400, "n_walkers": 4, "record_every": 2}})
    run_dir = create_run(cfg, tmp_path / "run")
    execute(run_dir, progress=False, handle_signals=False)
    assert analyze_run(run_dir) == 0
    check_files(type("R", (), {"output_dir": run_dir / "report"}),
                ["report.md", "report.html", "trace.png", "histograms.png"])
    md = (run_dir / "report" / "report.md").read_text()
    assert "x[0]" in md and "histogram of x[0] vs exact" in md  # system rebuilt from config.toml
    assert "report.html" in capsys.readouterr().out


def test_analyze_is_reachable_as_the_cli_calls_it_and_analysis_opens_no_folder():
    # The command line imports the module by name; the analysis package has no run-folder entry.
    import importlib

    assert importlib.import_module("langevin_md.run.analyze").analyze_run is analyze_run
    assert not hasattr(importlib.import_module("langevin_md.analysis.report"), "main")
