"""Coarse-grained (CG) bead models as Boltzmann targets: physical prior + learned network.

U(R) = U_prior(R) + kT · net((g(R) − μ)/s), where U_prior is a :class:`~.cg_terms.CGPrior`
(harmonic bonds and angles, a dihedral Fourier series, a repulsion), g the invariant
features of :class:`~.cg_terms.InvariantFeatures` (distances, angles, dihedrals as cos/sin)
normalised by their training mean μ and spread s, and net a SiLU MLP (CGnet, Wang et al.
2019). The prior keeps walkers in physical geometry where no training data were; the net,
fitted by force matching (:func:`langevin_md.training.fit_forces`), corrects the rest of
the potential of mean force.

:class:`CGModel` is a :class:`~.torch_models.TorchEnergy` in molecular units (nm, kJ/mol,
amu, ps) with bead masses and an mdtraj topology of the beads, so every integrator samples it
and the molecular analysis (φ/ψ, states) works on its results.

Files: :meth:`CGModel.save` writes one ``.safetensors`` file (weights, prior parameters,
reference structure, masses; settings and topology as JSON metadata). :meth:`CGModel.load`
reads it without pickle, and checks the header's settings and every tensor's shape and dtype
against what the settings imply before any tensor is read.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
import torch
from torch import nn

from .cg_terms import CGPrior, InvariantFeatures
from .torch_models import TorchEnergy

_META_KEY = "langevin_md.cg_model"
_FORMAT = "langevin_md.CGModel/1"
#: Limits on header values, checked before anything is allocated.
MAX_BEADS, MAX_WIDTH, MAX_LAYERS, MAX_FOURIER = 4096, 4096, 16, 32


def _mlp(n_in: int, hidden: int, n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden), nn.SiLU()]  # smooth: forces are continuous
        width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class CGEnergy(nn.Module):
    """U(R) = prior(R) + kT · net(normalised features), shape ``(n,)``, kJ/mol.

    Parameters
    ----------
    prior : CGPrior
    hidden, n_layers : int
        Width and depth of the network (``n_layers=0``: prior only, no network term).
    kT : float
        kJ/mol; the network's output unit.
    """

    def __init__(self, prior: CGPrior, hidden: int = 64, n_layers: int = 3, kT: float = 2.494):
        super().__init__()
        for name, v, low in (("hidden", hidden, 1), ("n_layers", n_layers, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        self.prior = prior
        self.features = InvariantFeatures(prior.n_beads, prior.angles, prior.dihedrals)
        self.hidden, self.n_layers, self.kT = int(hidden), int(n_layers), float(kT)
        n_f = self.features.n_features
        self.net = _mlp(n_f, self.hidden, self.n_layers) if self.n_layers else None
        self.register_buffer("feature_mean", torch.zeros(n_f, dtype=torch.float64))
        self.register_buffer("feature_scale", torch.ones(n_f, dtype=torch.float64))
        # one dtype for weights and buffers (float64; ``.float()`` for speed), so mixed
        # promotion never reaches the network's matmuls
        self.to(torch.float64)

    def set_data_statistics(self, R: torch.Tensor) -> None:
        """Normalise the network's inputs by the features' mean and spread over ``R``."""
        with torch.no_grad():
            g = self.features(R.to(self.feature_mean))
            self.feature_mean.copy_(g.mean(0))
            self.feature_scale.copy_(g.std(0).clamp_min(1e-3) if g.shape[0] > 1 else torch.ones_like(self.feature_scale))

    def network_energy(self, R: torch.Tensor) -> torch.Tensor:
        """The learned term kT · net(...), shape ``(n,)`` (zeros without a network)."""
        if self.net is None:
            return R.new_zeros(R.shape[0])
        h = (self.features(R) - self.feature_mean) / self.feature_scale
        return self.kT * self.net(h).squeeze(-1)

    def forward(self, R: torch.Tensor) -> torch.Tensor:
        return self.prior(R) + self.network_energy(R)


class CGModel(TorchEnergy):
    """A CG bead model as a system: event_shape ``(n_beads, 3)``, nm and kJ/mol.

    Parameters
    ----------
    energy : CGEnergy
    kT : float
        kJ/mol (``langevin_md.units.kT_from_temperature(T)``).
    masses : array_like, shape ``(n_beads,)``
        Bead masses, amu (e.g. :meth:`langevin_md.training.CGMap.bead_masses`).
    reference_positions : array_like, shape ``(n_beads, 3)``
        A typical structure (nm): every walker starts there.
    topology : mdtraj.Topology, optional
        One atom per bead (e.g. ``atom_topology.subset(bead_atoms)``), for mdtraj and the
        molecular analysis.
    """

    units = "molecular"

    def __init__(self, energy: CGEnergy, kT: float, masses, reference_positions, topology=None):
        if not isinstance(energy, CGEnergy):
            raise TypeError(f"energy must be a CGEnergy, got {type(energy).__name__}")
        n = energy.prior.n_beads
        super().__init__(energy, (n, 3), kT, masses)
        ref = np.asarray(reference_positions, dtype=np.float64)
        if ref.shape != (n, 3) or not np.all(np.isfinite(ref)):
            raise ValueError(f"reference_positions must be finite with shape ({n}, 3), got shape {ref.shape}")
        if topology is not None and getattr(topology, "n_atoms", None) != n:
            raise ValueError(f"topology must have one atom per bead ({n}), got {getattr(topology, 'n_atoms', topology)!r}")
        self.reference_positions = np.ascontiguousarray(ref)
        self.topology = topology

    def initial_positions(self, n_walkers: int, generator) -> torch.Tensor:
        """Every walker at the reference structure, ``(n_walkers, n_beads, 3)`` float64."""
        return torch.as_tensor(self.reference_positions).expand(int(n_walkers), -1, -1).clone()

    def energy_components(self, x: torch.Tensor) -> dict:
        """``{"prior": U_prior, "network": U_net}``, each ``(n_walkers,)`` kJ/mol (sum = U)."""
        self.check_positions(x)
        xin = x.to(self.module.feature_mean)  # the model's dtype and device
        with torch.no_grad():
            return {"prior": self.module.prior(xin).to(x), "network": self.module.network_energy(xin).to(x)}

    # ------------------------------------------------------------------ files
    def save(self, path) -> str:
        """Write the model to ``path`` (``.safetensors``, atomically). Returns the path."""
        from safetensors.torch import save_file

        path = os.fspath(path)
        if not path.lower().endswith(".safetensors"):
            raise ValueError(f"a CG model file must end in .safetensors, got {path!r}")
        e = self.module
        meta = {"format": _FORMAT, "kT": self.kT, "hidden": e.hidden, "n_layers": e.n_layers, "energy_kT": e.kT,
                "prior": e.prior.settings(), "n_fourier": e.prior.n_fourier,
                "counts": {k: len(getattr(e.prior, k)) for k in ("bonds", "angles", "dihedrals", "repulsion")},
                "topology": _topology_rows(self.topology)}
        state = {f"energy.{k}": v.detach().cpu().contiguous() for k, v in e.state_dict().items()}
        state["masses"] = torch.as_tensor(np.ascontiguousarray(self.masses, dtype=np.float64))
        state["reference_positions"] = torch.as_tensor(np.ascontiguousarray(self.reference_positions))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        save_file(state, tmp, metadata={_META_KEY: json.dumps(meta)})
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> "CGModel":
        """Read a model written by :meth:`save` (no pickle; header checked before reading)."""
        from safetensors import safe_open

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"CG model file {path!r} does not exist")
        try:
            handle = safe_open(path, framework="pt")
        except Exception as exc:  # safetensors raises its own error types for a bad header
            raise ValueError(f"{path!r} is not a readable safetensors file: {exc}") from None
        with handle as f:
            meta = _read_meta(f.metadata() or {}, path)
            expected = _expected_shapes(meta)
            found = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
            if set(found) != set(expected):
                missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
                raise ValueError(f"{path!r} does not hold a CG model of its header's shape: missing tensors "
                                 f"{missing}, unexpected {extra}")
            for k, (shape, dtype) in found.items():
                if shape != expected[k] or dtype not in ("F32", "F64", "I64"):
                    raise ValueError(f"{path!r}: tensor {k!r} has shape {shape} and dtype {dtype}; the header "
                                     f"implies shape {expected[k]}")
            state = {k: f.get_tensor(k) for k in f.keys()}
        energy = _empty_energy(meta)
        weights = {k[len("energy."):]: v for k, v in state.items() if k.startswith("energy.")}
        dtypes = {v.dtype for k, v in weights.items() if k.startswith("net.")}
        if len(dtypes) == 1:
            energy = energy.to(dtypes.pop())
        energy.load_state_dict(weights)
        energy.eval()
        return cls(energy, meta["kT"], state["masses"].numpy(), state["reference_positions"].numpy(),
                   _topology_from_rows(meta["topology"]))

    def __repr__(self):
        e = self.module
        return f"CGModel(n_beads={e.prior.n_beads}, hidden={e.hidden}, n_layers={e.n_layers}, kT={self.kT:g})"


def _topology_rows(topology) -> Optional[list]:
    if topology is None:
        return None
    return [[a.name, a.element.symbol if a.element is not None else "", a.residue.name, a.residue.index]
            for a in topology.atoms]


def _topology_from_rows(rows):
    if rows is None:
        return None
    import mdtraj

    top = mdtraj.Topology()
    chain = top.add_chain()
    residues: dict = {}
    for name, symbol, res_name, res_index in rows:
        if res_index not in residues:
            residues[res_index] = top.add_residue(res_name, chain)
        element = mdtraj.element.get_by_symbol(symbol) if symbol else mdtraj.element.virtual
        top.add_atom(name, element, residues[res_index])
    return top


def _int(meta: dict, key: str, low: int, high: int, path: str) -> int:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ValueError(f"{path!r}: header field {key!r} must be an integer in [{low}, {high}], got {v!r}")
    return v


def _read_meta(raw: dict, path: str) -> dict:
    text = raw.get(_META_KEY)
    if text is None:
        raise ValueError(f"{path!r} has no {_META_KEY!r} header: it was not written by CGModel.save")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path!r}: the {_META_KEY!r} header is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{path!r}: header format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                         f"expected {_FORMAT!r}")
    prior = meta.get("prior")
    if not isinstance(prior, dict) or not isinstance(meta.get("counts"), dict):
        raise ValueError(f"{path!r}: header lacks the 'prior' and 'counts' settings")
    meta["n_beads"] = _int(prior, "n_beads", 1, MAX_BEADS, path)
    _int(meta, "hidden", 1, MAX_WIDTH, path)
    _int(meta, "n_layers", 0, MAX_LAYERS, path)
    _int(meta, "n_fourier", 0, MAX_FOURIER, path)
    n = meta["n_beads"]
    for k in ("bonds", "angles", "dihedrals", "repulsion"):
        _int(meta["counts"], k, 0, n * n * n * n, path)
    for k in ("kT", "energy_kT"):
        if not isinstance(meta.get(k), (int, float)) or not meta[k] > 0:
            raise ValueError(f"{path!r}: header field {k!r} must be a positive number, got {meta.get(k)!r}")
    rows = meta.get("topology")
    if rows is not None and (not isinstance(rows, list) or len(rows) != n):
        raise ValueError(f"{path!r}: header topology must list {n} beads")
    return meta


def _expected_shapes(meta: dict) -> dict:
    n, c, nf = meta["n_beads"], meta["counts"], meta["n_fourier"]
    n_feat = n * (n - 1) // 2 + c["angles"] + 2 * c["dihedrals"]
    s = {"masses": (n,), "reference_positions": (n, 3),
         "energy.prior.bonds": (c["bonds"], 2), "energy.prior.angles": (c["angles"], 3),
         "energy.prior.dihedrals": (c["dihedrals"], 4), "energy.prior.repulsion": (c["repulsion"], 2),
         "energy.prior.bond_r0": (c["bonds"],), "energy.prior.bond_k": (c["bonds"],),
         "energy.prior.angle_theta0": (c["angles"],), "energy.prior.angle_k": (c["angles"],),
         "energy.prior.dihedral_cos": (c["dihedrals"], nf), "energy.prior.dihedral_sin": (c["dihedrals"], nf),
         "energy.prior.repulsion_sigma": (c["repulsion"],),
         "energy.features.pairs": (n * (n - 1) // 2, 2), "energy.features.angles": (c["angles"], 3),
         "energy.features.dihedrals": (c["dihedrals"], 4),
         "energy.feature_mean": (n_feat,), "energy.feature_scale": (n_feat,)}
    width, h = n_feat, meta["hidden"]
    for layer in range(meta["n_layers"]):
        s[f"energy.net.{2 * layer}.weight"] = (h, width)
        s[f"energy.net.{2 * layer}.bias"] = (h,)
        width = h
    if meta["n_layers"]:
        s[f"energy.net.{2 * meta['n_layers']}.weight"] = (1, width)
        s[f"energy.net.{2 * meta['n_layers']}.bias"] = (1,)
    return s


def _empty_energy(meta: dict) -> CGEnergy:
    n, c, nf = meta["n_beads"], meta["counts"], meta["n_fourier"]
    z = lambda *shape: np.zeros(shape)  # noqa: E731
    # placeholder indices of the right shape (distinct beads per row); the stored ones replace them
    idx = lambda m, w: np.tile(np.arange(w), (m, 1)) if n >= w else np.zeros((0, w), dtype=np.int64)  # noqa: E731
    for k, w in (("bonds", 2), ("angles", 3), ("dihedrals", 4), ("repulsion", 2)):
        if c[k] and n < w:
            raise ValueError(f"header lists {c[k]} {k} for only {n} beads")
    prior = CGPrior(n, idx(c["bonds"], 2), z(c["bonds"]), z(c["bonds"]), idx(c["angles"], 3), z(c["angles"]),
                    z(c["angles"]), idx(c["dihedrals"], 4), z(c["dihedrals"], nf), z(c["dihedrals"], nf),
                    idx(c["repulsion"], 2), z(c["repulsion"]), meta["prior"].get("repulsion_epsilon", 0.0))
    return CGEnergy(prior, meta["hidden"], meta["n_layers"], meta["energy_kT"])
