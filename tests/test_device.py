"""What `speed.*=auto` means on each kind of device (experiments.training.device)."""
import pytest
import torch

from experiments.config import SpeedConfig, Switch
from experiments.training.device import resolve_speed


def test_auto_on_a_cpu_is_channels_last_only_even_with_native_bf16(monkeypatch):
    """bf16 made plain-56 11-14 points worse than fp32 on the quick protocol: it stays opt-in on a CPU, whatever
    the CPU can do."""
    monkeypatch.setattr("experiments.training.device.native_bf16", lambda: True)
    on = resolve_speed(SpeedConfig(), torch.device("cpu"))
    assert (on.channels_last, on.bf16, on.compile, on.cuda_graphs) == (True, False, False, False)


def test_auto_on_cuda_is_the_whole_fast_path_but_compile():
    on = resolve_speed(SpeedConfig(), torch.device("cuda"))
    assert (on.channels_last, on.bf16, on.cuda_graphs, on.compile) == (True, True, True, False)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_on_and_off_override_auto(device):
    on = resolve_speed(SpeedConfig(bf16=Switch.on, channels_last=Switch.off, compile=Switch.on), torch.device(device))
    assert (on.bf16, on.channels_last, on.compile) == (True, False, True)


def test_the_runs_autocast_is_bf16_only_where_bf16_applies():
    cpu = torch.device("cpu")
    assert resolve_speed(SpeedConfig(), cpu).autocast(cpu) is None
    with resolve_speed(SpeedConfig(bf16=Switch.on), cpu).autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
