"""The ``[prior]`` table of a run config: a learned energy added to the system, U = U_ff + λ U_prior.

::

    [prior]
    model = "prior.safetensors"  # relative to the config file; stored absolute
    features = "phi_psi"         # what the model acts on (below)
    weight = 0.5                 # λ (default 1)
    # atoms = [4, 6, 8, 10, 16]  # features = "cg" only: the atoms the beads sit on, in bead order

The resolved config (``config.toml`` of a run folder) also holds ``sha256``, the model file's
hash: a session that resumes the run refuses a model file changed since the run started (its
frames would no longer continue the same chain). A config may state it too.

``features``:

* ``"phi_psi"``: the backbone dihedrals (φ, ψ) of a peptide, radians
  (:class:`~langevin_md.systems.features.PhiPsi` on the first φ/ψ pair of the topology); the
  model is an energy model of input width 2 (``langevin_md.training.EnergyMLP((2,), ...)``,
  periodic), read with :func:`langevin_md.training.load_model`.
* ``"positions"``: the system's own coordinates (an energy model whose ``event_shape`` is the
  system's), e.g. one trained by force matching on a run of the same system.
* ``"cg"``: a coarse-grained model saved by :meth:`langevin_md.systems.CGModel.save`, acting on
  the positions of ``atoms`` (one per bead).

The prior is summed with the system as a
:class:`~langevin_md.systems.prior_sum.ForceFieldWithPrior`, which works with both energy
engines of a molecule (the batched torch force field and the OpenMM bridge) and with analytic
systems, under ``backend = "torch"`` (or the default ``"auto"``, which picks torch for a prior:
OpenMM's executor steps the OpenMM System alone and
cannot hold a torch energy). The run then records ``U_ff`` and ``U_prior`` (= λ U_prior) with
every frame. Model files are read without pickle; their declared shapes are checked before any
tensor is allocated, and a model whose input width does not match the features is refused
before a run folder exists (:func:`build_prior` runs in ``check_config``).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ConfigError

__all__ = ["PRIOR_FEATURES", "resolve_prior", "build_prior"]

#: features = ... values and what each expects of the model.
PRIOR_FEATURES = {
    "phi_psi": "an energy model of input width 2 (φ, ψ in radians), e.g. EnergyMLP((2,), periodic=True)",
    "positions": "an energy model whose event_shape is the system's",
    "cg": "a CG model file written by CGModel.save, with one bead per entry of atoms",
}
_KEYS = ("model", "features", "weight", "atoms", "sha256")


def resolve_prior(table: dict, base_dir: Path) -> dict:
    """The ``[prior]`` table checked, ``model`` made absolute, ``weight`` defaulted to 1.

    Raises
    ------
    ConfigError
        Naming the key, the file and what is expected.
    """
    for key in table:
        if key not in _KEYS:
            raise ConfigError(f"[prior] unknown key {key!r}; allowed: {', '.join(_KEYS)}")
    for key in ("model", "features"):
        if key not in table:
            raise ConfigError(f"[prior] is missing required key {key!r} (model = a model file, features = one "
                              f"of {', '.join(PRIOR_FEATURES)})")
    model, features = table["model"], table["features"]
    if not isinstance(model, str) or not model:
        raise ConfigError(f"[prior] model = {model!r}: expected the path of a model file (a string)")
    if features not in PRIOR_FEATURES:
        raise ConfigError(f"[prior] features = {features!r} is not known; expected one of: "
                          + "; ".join(f"{k!r} ({v})" for k, v in PRIOR_FEATURES.items()))
    path = Path(model).expanduser()
    full = path if path.is_absolute() else base_dir / path
    if not full.is_file():
        what = "is a folder" if full.is_dir() else "does not exist"
        raise ConfigError(f"[prior] model: file {full} {what} (relative paths are taken relative to the config "
                          f"file's folder, {base_dir}); features = {features!r} expects {PRIOR_FEATURES[features]}")
    weight = table.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ConfigError(f"[prior] weight = {weight!r}: expected a finite number (λ, the prior's weight)")
    digest = _sha256(full)
    if "sha256" in table and table["sha256"] != digest:
        raise ConfigError(f"[prior] model = {full}: its SHA-256 is {digest}, but sha256 = {table['sha256']!r}; the "
                          "model file changed since this config was written (a run folder's config records the "
                          "model it started with: restore that file, or start a new run)")
    out = {"model": str(full.resolve()), "features": features, "weight": float(weight), "sha256": digest}
    atoms = table.get("atoms")
    if features == "cg":
        if (not isinstance(atoms, list) or not atoms
                or not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in atoms)):
            raise ConfigError(f"[prior] atoms = {atoms!r}: features = \"cg\" needs atoms = [i, j, ...], the "
                              "non-negative indices of the atoms the CG model's beads sit on, in bead order")
        if len(set(atoms)) != len(atoms):
            raise ConfigError(f"[prior] atoms = {atoms!r} repeats an atom")
        out["atoms"] = list(atoms)
    elif atoms is not None:
        raise ConfigError(f"[prior] atoms applies to features = \"cg\" only, not features = {features!r}")
    return out


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fail(prior: dict, what: str) -> ConfigError:
    return ConfigError(f"[prior] model = {prior['model']}: {what}; features = {prior['features']!r} expects "
                       f"{PRIOR_FEATURES[prior['features']]}")


def _energy_model(prior: dict, width: tuple):
    """The energy model of ``prior['model']`` (no pickle), checked to take inputs of shape ``width``."""
    from ..learned.io import load_model

    try:
        model = load_model(prior["model"])
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        raise _fail(prior, f"cannot be loaded ({exc})") from None
    if getattr(model, "noise_conditional", False) and not hasattr(model, "kT"):
        raise _fail(prior, f"holds a {type(model).__name__}, a score model without an energy")
    shape = getattr(model, "event_shape", None)
    if shape is None:
        raise _fail(prior, f"holds a {type(model).__name__} without a declared input shape (event_shape)")
    if tuple(shape) != tuple(width):
        raise _fail(prior, f"its input shape is {tuple(shape)}, but the features have shape {tuple(width)}")
    return model.double()


def build_prior(prior: dict, system):
    """``system`` + λ·prior as a :class:`~langevin_md.systems.prior_sum.ForceFieldWithPrior`.

    Parameters
    ----------
    prior : dict
        A resolved ``[prior]`` table (:func:`resolve_prior`).
    system : System
        The ``[system]``.

    Raises
    ------
    ConfigError
        Naming the key, the file and the expected features (wrong width, wrong kind of model,
        atoms out of range, a molecule without φ/ψ).
    """
    from ..systems.prior_sum import AtomSelection, ForceFieldWithPrior
    from ..systems.torch_models import FeaturePrior, TorchEnergy

    features = prior["features"]
    if features == "phi_psi":
        from ..systems.features import PhiPsi, ramachandran_indices

        topology = getattr(system, "topology", None)
        if topology is None:
            raise _fail(prior, f"the system {type(system).__name__} has no topology, so no φ/ψ")
        try:
            phi, psi = ramachandran_indices(topology)
        except (TypeError, ValueError) as exc:
            raise _fail(prior, f"the system has no backbone φ/ψ ({exc})") from None
        module = _energy_model(prior, (2,))
        term = FeaturePrior(module, PhiPsi(phi[0], psi[0]), system.event_shape, kT=system.kT)
    elif features == "positions":
        module = _energy_model(prior, tuple(system.event_shape))
        term = TorchEnergy(module, system.event_shape, kT=system.kT)
    else:
        from ..systems.cg_model import CGModel

        atoms = prior["atoms"]
        n_atoms = system.event_shape[0]
        if len(system.event_shape) != 2 or max(atoms) >= n_atoms:
            raise _fail(prior, f"atoms {atoms} are out of range for a system of event_shape {system.event_shape}")
        try:
            cg = CGModel.load(prior["model"])
        except (ValueError, TypeError, OSError, RuntimeError) as exc:
            raise _fail(prior, f"cannot be loaded as a CG model ({exc})") from None
        n_beads = cg.event_shape[0]
        if n_beads != len(atoms):
            raise _fail(prior, f"the CG model has {n_beads} beads but atoms lists {len(atoms)} atoms")
        if not math.isclose(cg.kT, system.kT, rel_tol=1e-6):
            raise _fail(prior, f"the CG model was made at kT = {cg.kT:g} kJ/mol, the system is at kT = "
                               f"{system.kT:g} kJ/mol")
        term = FeaturePrior(cg.module.double(), AtomSelection(atoms), system.event_shape, kT=system.kT)
    return ForceFieldWithPrior(system, term, prior["weight"])
