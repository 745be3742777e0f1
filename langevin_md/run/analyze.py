"""``langevin-md analyze RUN_DIR [--reference RUN2]``'s run-folder half: load the folders,
rebuild the system, hand them to :func:`langevin_md.analysis.report.report` and
:func:`langevin_md.analysis.prior_verdict.compare_distributions` (which never open a run folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..analysis.prior_verdict import compare_distributions
from ..analysis.report import report
from ..safe_paths import atomic_write, make_dirs
from .build import build_system
from .config import load_config
from .folder import CONFIG, load_run

__all__ = ["analyze_run", "compare_runs"]


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


#: Files :func:`compare_runs` writes into ``RUN_DIR/report``.
COMPARISON_PNG, COMPARISON_JSON, VERDICT_TXT = "comparison.png", "comparison.json", "verdict.txt"


def compare_runs(run_dir, reference_dir, result=None, reference=None) -> dict:
    """``langevin-md analyze RUN_DIR --reference RUN2``: RUN_DIR's backbone φ/ψ law against RUN2's.

    Writes into ``RUN_DIR/report``: ``comparison.png`` (free-energy surfaces F = −kT ln p side
    by side and their difference), ``comparison.json`` (Jensen–Shannon divergence with its
    bootstrap error over walkers, noise floor, permutation p-value, state populations with
    errors) and ``verdict.txt`` (the plain-language verdict), and prints the verdict.

    Parameters
    ----------
    run_dir, reference_dir : str or PathLike
        Run folders of the same peptide (or of its CG beads with a topology).
    result, reference : SampleResult, optional
        Already loaded folders (loaded here when not given).

    Returns
    -------
    dict
        What ``comparison.json`` holds, plus ``"files"``.

    Raises
    ------
    ValueError
        When a run has no molecular topology with a backbone φ/ψ.
    """
    run_dir, reference_dir = Path(run_dir), Path(reference_dir)
    result = load_run(run_dir) if result is None else result
    reference = load_run(reference_dir) if reference is None else reference
    for path, r in ((run_dir, result), (reference_dir, reference)):
        if r.metadata.get("topology") is None:
            raise ValueError(f"--reference compares backbone φ/ψ distributions, but {path} has no molecular "
                             "topology (an analytic system?)")
    labels = (run_dir.name, reference_dir.name) if run_dir.name != reference_dir.name else ("run", "reference")
    out = run_dir / "report"
    # As analyze_run: no link below the run folder, and none at the files written (a link at
    # report/ or at comparison.json would send the comparison outside the folder).
    make_dirs(out, inside=run_dir)
    c = compare_distributions(result, reference, features="phi_psi", path=out / COMPARISON_PNG, labels=labels)
    data = {"run": str(run_dir), "reference": str(reference_dir), "js": c.js, "js_error": c.js_error,
            "js_noise_floor": c.js_null, "p_value": c.p_value, "consistent": c.consistent, "verdict": c.verdict,
            "states": {name: {"population": float(p), "error": float(e), "reference_population": float(q),
                              "reference_error": float(f), "z": float(z)}
                       for name, p, e, q, f, z in zip(c.state_names, c.populations, c.population_errors,
                                                      c.reference_populations, c.reference_population_errors,
                                                      np.nan_to_num(c.population_z, posinf=1e300, neginf=-1e300))}}
    atomic_write(out / COMPARISON_JSON, json.dumps(data, indent=1).encode("utf-8"))
    atomic_write(out / VERDICT_TXT, (c.verdict + "\n").encode("utf-8"))
    print(f"comparison with {reference_dir}: {c.verdict}")
    print(f"free-energy surfaces and their difference: {out / COMPARISON_PNG}")
    data["files"] = [str(out / n) for n in (COMPARISON_PNG, COMPARISON_JSON, VERDICT_TXT)]
    return data
