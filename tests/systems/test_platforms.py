"""Platform choice and settings: the auto rule, properties, and loud failures."""

from __future__ import annotations

import pytest

openmm = pytest.importorskip("openmm")
from openmm import app  # noqa: E402

from langevin_md.systems import platforms  # noqa: E402
from langevin_md.systems.molecules import ALANINE_DIPEPTIDE_PDB, alanine_dipeptide, lennard_jones_fluid  # noqa: E402
from langevin_md.systems.openmm_system import OpenMMSystem  # noqa: E402
from langevin_md.systems.platforms import (  # noqa: E402
    available_platforms,
    choose_platform,
    platform_properties,
    resolve_platform,
)

HAVE_OPENCL = "OpenCL" in available_platforms()
HAVE_GPU_PLATFORM = any(p in available_platforms() for p in ("CUDA", "HIP"))
opencl = [
    pytest.mark.opencl,
    pytest.mark.skipif(not HAVE_OPENCL, reason="OpenMM's OpenCL platform is not available (no OpenCL ICD/PoCL)"),
]


def _system(*files):
    pdb = app.PDBFile(ALANINE_DIPEPTIDE_PDB)
    return app.ForceField(*files).createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)


def test_available_platforms():
    names = available_platforms()
    assert "Reference" in names and "CPU" in names


def test_unavailable_platform_lists_available_ones():
    missing = next(p for p in ("CUDA", "HIP", "Metal") if p not in available_platforms())
    with pytest.raises(ValueError) as info:
        resolve_platform(missing, _system("amber14-all.xml"))
    text = str(info.value)
    assert missing in text and "Reference" in text and "CPU" in text
    assert "plugin load failures" in text.lower()
    with pytest.raises(ValueError, match="available platforms: .*Reference"):
        alanine_dipeptide("vacuum", platform=missing)


def test_names_are_case_insensitive():
    platform, props = resolve_platform("cpu", _system("amber14-all.xml"))
    assert platform.getName() == "CPU" and props == {}


def test_auto_rule_follows_measurements():
    if HAVE_GPU_PLATFORM:
        pytest.skip("a CUDA/HIP platform is present; the CPU-only rule does not apply")
    # small pairwise system: Reference (~20x faster than CPU per call, measured)
    assert choose_platform(_system("amber14-all.xml")) == "Reference"
    # CustomGBForce (OBC2) is slow on Reference even for 22 atoms
    assert choose_platform(_system("amber14-all.xml", "implicit/obc2.xml")) == "CPU"
    # above REFERENCE_MAX_PARTICLES: CPU
    big = lennard_jones_fluid(n_per_side=6, platform="Reference").openmm_system
    assert big.getNumParticles() > platforms.REFERENCE_MAX_PARTICLES
    assert choose_platform(big) == "CPU"
    # double precision is honoured by Reference
    assert choose_platform(big, precision="double") == "Reference"
    assert alanine_dipeptide("vacuum", engine="openmm").platform_name == "Reference"


def test_auto_without_gpu_refuses_device_settings():
    if HAVE_GPU_PLATFORM or (HAVE_OPENCL and platforms.opencl_device_is_gpu()):
        pytest.skip("a GPU platform is present")
    with pytest.raises(ValueError, match="no GPU platform.*precision='mixed'"):
        choose_platform(_system("amber14-all.xml"), precision="mixed")
    with pytest.raises(ValueError, match="device_index=0"):
        choose_platform(_system("amber14-all.xml"), device_index=0)


def test_platform_properties():
    assert platform_properties("Reference") == {}
    assert platform_properties("Reference", precision="double") == {}
    with pytest.raises(ValueError, match="Reference platform has no Precision"):
        platform_properties("Reference", precision="single")
    with pytest.raises(ValueError, match="CPU platform has no Precision"):
        platform_properties("CPU", precision="mixed")
    with pytest.raises(ValueError, match="CPU platform has no device index"):
        platform_properties("CPU", device_index=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        platform_properties("Reference", precision="quad")


@pytest.mark.opencl
@pytest.mark.skipif(not HAVE_OPENCL, reason="OpenMM's OpenCL platform is not available (no OpenCL ICD/PoCL)")
def test_opencl_settings_reach_every_context():
    assert platform_properties("OpenCL", precision="double", device_index=0) == {"Precision": "double", "DeviceIndex": "0"}
    system = alanine_dipeptide("vacuum", platform="OpenCL", precision="double", device_index=0)
    assert system.platform_name == "OpenCL"
    assert system.platform_properties == {"Precision": "double", "DeviceIndex": "0"}
    context = system.make_context(openmm.VerletIntegrator(0.001))
    platform = context.getPlatform()
    assert platform.getName() == "OpenCL"
    assert platform.getPropertyValue(context, "Precision") == "double"
    assert platform.getPropertyValue(context, "DeviceIndex") == "0"


@pytest.mark.opencl
@pytest.mark.skipif(not HAVE_OPENCL, reason="OpenMM's OpenCL platform is not available (no OpenCL ICD/PoCL)")
def test_pocl_is_not_a_gpu():
    pdb = app.PDBFile(ALANINE_DIPEPTIDE_PDB)
    context = openmm.Context(_system("amber14-all.xml"), openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("OpenCL"))
    vendor = context.getPlatform().getPropertyValue(context, "OpenCLPlatformName")
    del context, pdb
    if "Portable Computing Language" not in vendor:
        pytest.skip(f"OpenCL runs on {vendor!r}, not PoCL")
    assert not platforms.opencl_device_is_gpu()


def test_explicit_platform_is_used_as_given():
    system = OpenMMSystem.from_pdb(ALANINE_DIPEPTIDE_PDB, forcefield=("amber14-all.xml",), platform="CPU")
    assert system.platform_name == "CPU"
    assert system.make_context(openmm.VerletIntegrator(0.001)).getPlatform().getName() == "CPU"
