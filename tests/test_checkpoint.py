"""Checkpoints that stand alone: the input normalisation kept with the weights, and `load_model(run_dir)` giving back
the trained net and its input transform, checked by reproducing a run's logged test error from the files alone."""
import io

import pytest
import torch
import torch.nn.functional as F

from experiments.errors import UserError
from experiments.harness.checkpoint import load_model
from tests.helpers.harness import decoded_images, metrics_rows, run_inprocess


@pytest.mark.parametrize("normalize", ["pixel_mean", "keras"])
def test_load_model_reproduces_the_runs_last_test_error_from_the_checkpoint_alone(normalize, tiny, image_folder,
                                                                                   tmp_path):
    assert run_inprocess(tiny + ["depth=8", f"protocol.normalize={normalize}"], tmp_path) == "completed"
    model, transform = load_model(tmp_path)
    assert not model.training
    x, y = decoded_images(image_folder, "test")
    with torch.no_grad():
        out = model(transform(x))
    last = metrics_rows(tmp_path)[-1]
    assert 100.0 * (out.argmax(1) != y).float().mean().item() == pytest.approx(float(last["test_err"]), abs=1e-9)
    assert F.cross_entropy(out, y).item() == pytest.approx(float(last["test_loss"]), rel=1e-4)
    train_x, _ = decoded_images(image_folder, "train")
    if normalize == "pixel_mean":  # Sec. 4.2: the training images' mean, no std
        assert torch.allclose(transform.shift, train_x.float().div(255).mean(0), atol=1e-6) and transform.scale is None
    # tensors and plain types only: what torch.load(weights_only=True) reads
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(ckpt["input"]) == {"shift", "scale"}


def test_a_checkpoint_without_its_normalisation_or_none_at_all_is_one_line(tiny, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path)
    assert run_inprocess(tiny + ["depth=8"], tmp_path) == "completed"
    path = tmp_path / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["input"]  # as every checkpoint before issue 34
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(UserError, match="written before checkpoints kept their input normalisation") as e:
        load_model(tmp_path)
    assert "\n" not in str(e.value)
