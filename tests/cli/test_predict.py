"""`kvt predict` on many files, folders, unreadable files and for scripts."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli


@pytest.fixture
def images(tmp_path):
    from kvt.data import load_dataset

    ds = load_dataset("digits")
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    paths = {}
    for name, digit in (("a.png", 3), ("sub/c.png", 7), ("sub/d.jpg", 1)):
        Image.fromarray(ds.x_test[ds.y_test == digit][0][..., 0]).convert("RGB").save(
            folder / name)
        paths[name] = folder / name
    (folder / "notes.txt").write_text("not an image")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    paths["bad"] = bad
    return folder, paths


def test_good_files_are_predicted_and_each_bad_one_gets_a_line(capsys, digits_runs, images):
    _, p = images
    code, out, err = run_cli(capsys, "predict", str(digits_runs["keras"]), str(p["a.png"]),
                             str(p["bad"]), str(p["sub/c.png"]), str(p["bad"].with_name("no.png")))
    assert code == 3
    assert [ln.split(": ")[0] for ln in out.splitlines()] == [str(p["a.png"]), str(p["sub/c.png"])]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert lines[0].startswith("kvt predict: error: cannot decode image") and "bad.png" in lines[0]
    assert lines[1] == f"kvt predict: error: image {p['bad'].with_name('no.png')} does not " \
                       f"exist: check the path"


def test_folders_are_searched_recursively_for_images_only(capsys, digits_runs, images):
    folder, p = images
    code, out, err = run_cli(capsys, "predict", str(digits_runs["keras"]), str(folder))
    assert code == 0, err
    assert [ln.split(": ")[0] for ln in out.splitlines()] == \
        [str(p[n]) for n in ("a.png", "sub/c.png", "sub/d.jpg")]
    empty = folder / "empty"
    empty.mkdir()
    code, out, err = run_cli(capsys, "predict", str(digits_runs["keras"]), str(empty))
    assert code == 3 and out == ""
    assert err.strip() == f"kvt predict: error: folder {empty} holds no PNG or JPEG images: " \
                          f"pass image files or a folder of them"


def test_csv_and_json_formats_for_scripts(capsys, digits_runs, images):
    folder, p = images
    model = str(digits_runs["keras"])
    code, out, err = run_cli(capsys, "predict", model, str(folder), "--top", "2",
                             "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["image"], r["rank"]) for r in rows] == \
        [(str(p[n]), k) for n in ("a.png", "sub/c.png", "sub/d.jpg") for k in ("1", "2")]
    assert all(r["class"] in [str(d) for d in range(10)] for r in rows)
    code, out, err = run_cli(capsys, "predict", model, str(folder), str(p["bad"]), "--top", "3",
                             "--format", "json")
    assert code == 3 and len(err.strip().splitlines()) == 1
    data = json.loads(out)
    assert [d["image"] for d in data] == [str(p[n]) for n in ("a.png", "sub/c.png", "sub/d.jpg")]
    for d in data:
        probs = [t["probability"] for t in d["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
    text = run_cli(capsys, "predict", model, str(p["a.png"]), "--top", "3")[1]
    first = text.split(": ", 1)[1].split(", ")
    assert [c.split()[0] for c in first] == [t["class"] for t in data[0]["top"]]


def test_sixteen_bit_png_predicts_as_its_8_bit_copy(tmp_path, capsys, digits_runs):
    from kvt.data import load_dataset

    ds = load_dataset("digits")
    pixels = ds.x_test[0][..., 0]
    Image.fromarray(pixels).save(tmp_path / "8.png")
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "16.png")
    code, out, err = run_cli(capsys, "predict", str(digits_runs["keras"]), str(tmp_path / "8.png"),
                             str(tmp_path / "16.png"), "--format", "json")
    assert code == 0, err
    eight, sixteen = json.loads(out)  # same pixels, so the same prediction (up to batching)
    assert [t["class"] for t in eight["top"]] == [t["class"] for t in sixteen["top"]]
    assert [t["probability"] for t in eight["top"]] == \
        pytest.approx([t["probability"] for t in sixteen["top"]], abs=1e-5)
