"""A full disk during `kvt export` is the disk's problem, not the model's: exit 6 and one
line without the framework's op text, and nothing half-written left behind."""

import errno
import os

import pytest

import tiny_models
from conftest import run_cli


def _tf_full_disk(path):
    """What TensorFlow raises when a SavedModel's variables hit a full disk."""
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(
        None, None, f"{path}/variables/variables_temp/part-00000-of-00001.data-00000-of-00001"
                    f"; No space left on device\n\t [[{{{{node SaveV2}}}}]] [Op:SaveV2] name: ")


@pytest.mark.parametrize("error", [_tf_full_disk, lambda path: OSError(
    errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))], ids=["tensorflow-op", "oserror"])
def test_a_full_disk_during_export_exits_6_and_leaves_nothing(tmp_path, capsys, monkeypatch,
                                                              error):
    import keras

    model = tiny_models.brightness_model(tmp_path / "m.keras")
    data = tiny_models.dark_and_bright(tmp_path / "data", dark="nuit", bright="café")
    out_dir = tmp_path / "exports"
    out_dir.mkdir()

    def half_written(self, path, *args, **kwargs):
        os.makedirs(os.path.join(path, "variables"))
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"\0" * 100)
        raise error(path)

    monkeypatch.setattr(keras.Model, "export", half_written)
    code, out, err = run_cli(capsys, "export", str(model), "--format", "saved_model",
                             "--dataset", str(data), "--out", str(out_dir / "sm"))
    lines = err.strip().splitlines()
    assert code == 6 and len(lines) == 1, err
    assert lines[0] == (f"kvt export: error: cannot write {out_dir / 'sm'} (No space left on "
                        f"device): nothing was exported; free space or fix permissions there, "
                        f"or choose another --out")
    assert "Traceback" not in out + err and "SaveV2" not in err
    assert list(out_dir.iterdir()) == []  # neither the artifact nor its temporary
