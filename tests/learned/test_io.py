"""Saving and loading models: safetensors and weights-only torch files; pickles refused."""

import pytest
import torch

from langevin_md.training import EnergyMLP, ScoreMLP, load_model, save_model


def _same(a, b):
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    s = torch.full((5,), 0.3)
    return torch.allclose(a(x, s), b(x, s))


@pytest.mark.parametrize("ext", ["safetensors", "pt"])
@pytest.mark.parametrize("cls", [EnergyMLP, ScoreMLP])
def test_round_trip_rebuilds_the_declared_architecture(tmp_path, ext, cls):
    model = cls((3,), hidden=12, n_layers=2, periodic=False, sigma_min=0.02)
    model.shift.fill_(0.5)
    path = save_model(model, tmp_path / f"m.{ext}")
    loaded = load_model(path)
    assert type(loaded) is cls and loaded.hidden == 12 and float(loaded.sigma_min) == pytest.approx(0.02)
    assert _same(model, loaded)


def test_pt_file_loads_with_weights_only(tmp_path):
    path = save_model(EnergyMLP((2,), hidden=4, n_layers=1), tmp_path / "m.pt")
    obj = torch.load(path, weights_only=True)
    assert set(obj) == {"architecture", "state_dict"}


def test_plain_state_dict_needs_an_architecture(tmp_path):
    model = ScoreMLP((2,), hidden=4, n_layers=1)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="without a declared architecture"):
        load_model(tmp_path / "sd.pt")
    loaded = load_model(tmp_path / "sd.pt", architecture=ScoreMLP((2,), hidden=4, n_layers=1))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    loaded = load_model(tmp_path / "sd.pt", architecture=model.architecture())
    assert isinstance(loaded, ScoreMLP)


def test_pickled_model_is_refused_unless_trusted(tmp_path):
    model = EnergyMLP((2,), hidden=4, n_layers=1)
    path = tmp_path / "full.pt"
    torch.save(model, path)  # pickles the module object
    with pytest.raises(ValueError, match="pickled Python object.*trust_pickle=True"):
        load_model(path)
    loaded = load_model(path, trust_pickle=True)
    assert isinstance(loaded, EnergyMLP)


def test_bad_extension_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors, \.pt or \.pth"):
        save_model(EnergyMLP((2,)), tmp_path / "m.bin")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "none.safetensors")
