"""Choosing and configuring the OpenMM platform that evaluates a force field.

``platform="auto"`` picks a platform by a fixed rule (so the same system always gets the same
platform, and the same floating-point results, on the same machine), written down from
measurements of one energy + force evaluation through :class:`~langevin_md.systems.
openmm_system.OpenMMSystem` on a 2-core CPU VM with OpenMM 8.6.1 (see
``benchmarks/bench_openmm_bridge.py``):

=========================================  ==========  ========  ===================
system (particles)                          Reference   CPU       OpenCL (PoCL, CPU)
=========================================  ==========  ========  ===================
alanine dipeptide, vacuum (22)              11 µs       ~250 µs   ~220 µs
alanine dipeptide, OBC2 implicit (22)       1.3 ms      ~0.6 ms   ~0.27 ms
villin, vacuum NoCutoff (582)               2.5 ms      0.77 ms
villin, OBC2 implicit (582)                 77 ms       24 ms
TIP3P water, PME (306)                      4.3 ms      1.1 ms
TIP3P water, PME (1503)                     30 ms       2.4 ms
=========================================  ==========  ========  ===================

The CPU platform costs ~0.25 ms per call however small the system is (thread hand-offs and
neighbour-list bookkeeping; ``Threads=1`` does not remove it), so the single-threaded
Reference platform wins by ~20× for small pairwise systems, while its O(N²) loops and
interpreted custom forces lose as soon as the system grows or uses PME or a
``CustomGBForce`` (Amber's ``implicit/obc2.xml`` is one).

The rule (:func:`choose_platform`):

1. a GPU platform (CUDA, then HIP, then OpenCL on a GPU device) for systems of at least
   :data:`GPU_MIN_PARTICLES` particles, or whenever a device index or single/mixed precision
   was asked for;
2. Reference for at most :data:`REFERENCE_MAX_PARTICLES` particles when the system has no
   force that is slow on Reference (PME/Ewald, ``CustomGBForce``), or when double precision
   was asked for and no GPU platform is used;
3. CPU otherwise.

OpenCL running on a CPU device (PoCL) is never chosen automatically, although it was the
fastest for implicit-solvent alanine dipeptide here: OpenMM warns that PoCL is unsupported
("results may be incorrect"), ``LocalEnergyMinimizer`` segfaults on it (OpenMM 8.6.1 with
PoCL), and each Context compiles kernels for ~1 s. Ask for ``platform="OpenCL"`` to use it.

A platform asked for by name is used or an error is raised; nothing falls back silently.
"""

from __future__ import annotations

import functools
from typing import Optional

#: Largest particle count for which ``"auto"`` picks the Reference platform (measured crossover
#: with the CPU platform for pairwise NoCutoff force fields lies between ~150 and ~250).
REFERENCE_MAX_PARTICLES = 200

#: Smallest particle count for which ``"auto"`` moves to a GPU platform. Not measured on this
#: machine (no GPU): a GPU call costs tens of µs of launch and transfer latency, which the
#: Reference platform beats for small molecules.
GPU_MIN_PARTICLES = 1000

#: GPU platforms in order of preference. OpenCL counts only when its device is a GPU.
GPU_PLATFORMS = ("CUDA", "HIP", "OpenCL")

PRECISIONS = ("single", "mixed", "double")

# Forces whose Reference implementation is much slower than the CPU platform's even for a
# handful of particles (measured: CustomGBForce 1.3 ms vs 0.6 ms at 22 atoms; PME 4.3 ms vs
# 1.1 ms at 306 atoms).
_SLOW_ON_REFERENCE = ("CustomGBForce",)
_SLOW_NONBONDED_METHODS = ("PME", "Ewald", "LJPME")


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms that loaded in this process, e.g. ``["Reference", "CPU"]``."""
    import openmm

    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def _unavailable_message(requested: str) -> str:
    import openmm

    failures = list(openmm.Platform.getPluginLoadFailures())
    text = (
        f"OpenMM platform {requested!r} is not available; available platforms: "
        f"{', '.join(available_platforms())}."
    )
    if failures:
        text += " Plugin load failures reported by OpenMM: " + " | ".join(str(f) for f in failures)
    else:
        text += " OpenMM reported no plugin load failures (the platform's plugin is not installed)."
    return text


@functools.lru_cache(maxsize=None)
def opencl_device_is_gpu(device_index: Optional[int] = None) -> bool:
    """Whether OpenMM's OpenCL platform runs on a GPU (False for PoCL and other CPU devices).

    Creates one throw-away Context (about a second of kernel compilation); cached per process.
    """
    import openmm

    if "OpenCL" not in available_platforms():
        return False
    system = openmm.System()
    system.addParticle(1.0)
    platform = openmm.Platform.getPlatformByName("OpenCL")
    props = {} if device_index is None else {"DeviceIndex": str(int(device_index))}
    try:
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform, props)
    except Exception:  # an OpenCL runtime without usable devices
        return False
    name = platform.getPropertyValue(context, "DeviceName").lower()
    vendor = platform.getPropertyValue(context, "OpenCLPlatformName").lower()
    del context
    cpu_markers = ("portable computing language", "pocl", "pthread", "cpu")
    return not any(m in name or m in vendor for m in cpu_markers)


def _slow_on_reference(system) -> bool:
    import openmm

    for force in system.getForces():
        name = type(force).__name__
        if name in _SLOW_ON_REFERENCE:
            return True
        if isinstance(force, openmm.NonbondedForce):
            method = force.getNonbondedMethod()
            if any(method == getattr(openmm.NonbondedForce, m) for m in _SLOW_NONBONDED_METHODS):
                return True
    return False


def _gpu_platform(device_index: Optional[int]) -> Optional[str]:
    names = available_platforms()
    for name in ("CUDA", "HIP"):
        if name in names:
            return name
    if "OpenCL" in names and opencl_device_is_gpu(device_index):
        return "OpenCL"
    return None


def choose_platform(system, precision: Optional[str] = None, device_index: Optional[int] = None) -> str:
    """The platform name that ``platform="auto"`` uses for ``system`` (rule in the module doc).

    Parameters
    ----------
    system : openmm.System
    precision : {None, "single", "mixed", "double"}
    device_index : int or None

    Raises
    ------
    ValueError
        When ``precision`` or ``device_index`` asks for a device platform and none is available.
    """
    n = system.getNumParticles()
    wants_device = device_index is not None or precision in ("single", "mixed")
    gpu = _gpu_platform(device_index) if (wants_device or n >= GPU_MIN_PARTICLES) else None
    if gpu is not None:
        return gpu
    if wants_device:
        asked = []
        if precision is not None:
            asked.append(f"precision={precision!r}")
        if device_index is not None:
            asked.append(f"device_index={device_index!r}")
        raise ValueError(
            f"platform='auto' found no GPU platform to honour {', '.join(asked)}; available "
            f"platforms: {', '.join(available_platforms())}. Only CUDA, HIP and OpenCL have a "
            "precision or device setting; name one explicitly (e.g. platform='OpenCL' to use "
            "OpenCL on a CPU device), or leave precision/device_index unset."
        )
    if precision == "double":
        return "Reference"
    if n <= REFERENCE_MAX_PARTICLES and not _slow_on_reference(system):
        return "Reference"
    return "CPU" if "CPU" in available_platforms() else "Reference"


def platform_properties(name: str, precision: Optional[str] = None, device_index: Optional[int] = None) -> dict:
    """OpenMM platform properties for ``precision`` and ``device_index`` on platform ``name``.

    Parameters
    ----------
    name : str
        An available platform name.
    precision : {None, "single", "mixed", "double"}
        Maps to the ``"Precision"`` property (CUDA, HIP, OpenCL). The Reference platform always
        computes in double precision, so ``"double"`` is accepted there and adds nothing.
    device_index : int or None
        Maps to ``"DeviceIndex"`` (or the older ``"CudaDeviceIndex"``/``"OpenCLDeviceIndex"``).

    Returns
    -------
    dict of str to str
    """
    import openmm

    platform = openmm.Platform.getPlatformByName(name)
    names = set(platform.getPropertyNames())
    props: dict[str, str] = {}
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
        if "Precision" in names:
            props["Precision"] = precision
        elif not (name == "Reference" and precision == "double"):
            raise ValueError(
                f"the {name} platform has no Precision setting, so precision={precision!r} cannot "
                "be honoured; use the Reference platform for double precision, or CUDA/HIP/OpenCL "
                "for single/mixed/double"
            )
    if device_index is not None:
        if isinstance(device_index, bool) or not isinstance(device_index, int) or device_index < 0:
            raise ValueError(f"device_index must be a non-negative int or None, got {device_index!r}")
        key = next((k for k in ("DeviceIndex", f"{name}DeviceIndex", "CudaDeviceIndex", "OpenCLDeviceIndex") if k in names), None)
        if key is None:
            raise ValueError(
                f"the {name} platform has no device index setting, so device_index={device_index!r} "
                "cannot be honoured; device indices apply to CUDA, HIP and OpenCL"
            )
        props[key] = str(device_index)
    return props


def resolve_platform(platform: str, system, precision: Optional[str] = None, device_index: Optional[int] = None):
    """The ``openmm.Platform`` and property dict for a platform request.

    Parameters
    ----------
    platform : str
        ``"auto"`` or a platform name (case-insensitive: ``"cpu"`` means ``"CPU"``).
    system : openmm.System
        Used by ``"auto"`` (particle count and force types).
    precision, device_index
        See :func:`platform_properties`.

    Returns
    -------
    (openmm.Platform, dict of str to str)

    Raises
    ------
    ValueError
        When the named platform is not available (the message lists the available platforms
        and OpenMM's plugin load failures), or the settings do not apply to it.
    """
    import openmm

    if not isinstance(platform, str):
        raise TypeError(f"platform must be 'auto' or a platform name string, got {type(platform).__name__}")
    if platform.lower() == "auto":
        name = choose_platform(system, precision, device_index)
    else:
        matches = [p for p in available_platforms() if p.lower() == platform.lower()]
        if not matches:
            raise ValueError(_unavailable_message(platform))
        name = matches[0]
    return openmm.Platform.getPlatformByName(name), platform_properties(name, precision, device_index)
