"""``langevin-md analyze RUN_DIR``'s run-folder half: load the folder, rebuild the system,
hand both to :func:`langevin_md.analysis.report.report` (which never opens a run folder)."""

from __future__ import annotations

from pathlib import Path

from ..analysis.report import report
from ..safe_paths import make_dirs
from .build import build_system
from .config import load_config
from .folder import CONFIG, load_run

__all__ = ["analyze_run"]


def analyze_run(run_dir) -> int:
    """Write ``RUN_DIR/report`` and print where it is.

    The system is rebuilt from the run's ``config.toml`` when possible, so analytic systems
    get their exact comparisons; otherwise the report goes without them.

    Returns
    -------
    int
        0 (the report was written, whatever it found).
    """
    run_dir = Path(run_dir)
    result = load_run(run_dir)
    try:
        result.system = build_system(load_config(run_dir / CONFIG))
    except Exception as exc:  # noqa: BLE001 - the report is still useful without exact comparisons
        print(f"note: could not rebuild the system from {run_dir / CONFIG} ({exc}); "
              "no exact comparisons")
    # Created (or checked) here, where the run folder is known: no component below it may be
    # a symbolic link, so the report is never written outside the folder.
    make_dirs(run_dir / "report", inside=run_dir)
    rep = report(result, run_dir / "report", exact="auto", title=f"Report for {run_dir.name}")
    print(f"report written to {rep.output_dir / 'report.html'}")
    for w in rep.warnings:
        print(f"warning: {w}")
    return 0
