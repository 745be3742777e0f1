import torch

from langevin_md.training import EnergyMLP, load_model, save_model


def test_float64_weights_round_trip_exactly(tmp_path):
    model = EnergyMLP(event_shape=(2,)).double()
    for suffix in (".safetensors", ".pt"):
        path = tmp_path / f"m{suffix}"
        save_model(model, path)
        back = load_model(path)
        for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
            assert b.dtype == torch.float64, name
            assert torch.equal(a, b), name
