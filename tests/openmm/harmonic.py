"""An OpenMM System of independent particles in an isotropic harmonic well, for exact-law tests.

U = Σ_i k/2 |x_i|² with per-particle masses: every coordinate of every particle is an
independent 1-d harmonic oscillator with σ² = kT/k and ω_i² = k/m_i, so one Context holds
3 × n_particles independent chains for schemes with per-coordinate noise.
"""

from __future__ import annotations

import numpy as np


def harmonic_openmm_system(masses, k: float, temperature: float, platform: str = "Reference"):
    """OpenMMSystem of ``len(masses)`` particles (amu) in U = k/2 |x|² (k in kJ/mol/nm²).

    The topology is one argon-like atom per residue and has no bonds; all particles start
    at the origin.
    """
    import openmm
    from openmm import app

    from langevin_md.systems.openmm_system import OpenMMSystem

    masses = np.asarray(masses, dtype=np.float64)
    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*k*(x^2 + y^2 + z^2)")
    force.addGlobalParameter("k", float(k))
    topology = app.Topology()
    chain = topology.addChain()
    for i, m in enumerate(masses):
        system.addParticle(float(m))
        force.addParticle(i, [])
        residue = topology.addResidue("AR", chain)
        topology.addAtom("AR", app.element.argon, residue)
    system.addForce(force)
    return OpenMMSystem(system, topology, np.zeros((len(masses), 3)), temperature=temperature, platform=platform)
