"""The OpenMM executor: schemes compiled to OpenMM integrators, one Context per walker.

=============  ================================================================
module         owns
=============  ================================================================
``export``     compiling BAOAB/OBABO/Brownian/ULA/MALA to ``openmm.Integrator``
``seeds``      walker seeds from the run seed (and the resume step)
``walker``     one seeded Context per walker
``state``      fast ``getState`` reads and frame reading (BAOAB kinetic energy)
``executor``   :class:`OpenMMSampler`: the loop, reporters, sinks, checkpoints
=============  ================================================================

Importing this package does not import OpenMM; using it does.
"""

from .executor import OpenMMSampler
from .export import SUPPORTED, check_supported, scheme_description, to_openmm_integrator
from .seeds import walker_seed

__all__ = ["OpenMMSampler", "SUPPORTED", "check_supported", "scheme_description",
           "to_openmm_integrator", "walker_seed"]
