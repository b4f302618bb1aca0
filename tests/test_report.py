import warnings

import numpy as np
import pytest

from kvt import report


def _contrast(a, b):
    def luminance(rgb):
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, kept open for inspection."""
    kept = []

    def keep(fig, path):
        kept.append(fig)
        fig.canvas.draw()  # lays the text out, as saving would
        return path
    monkeypatch.setattr(report, "_save_figure", keep)
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


@pytest.mark.parametrize("matrix", [
    [[50, 60], [70, 100]],  # smallest count above half the largest: once white on white
    [[0, 3, 9], [1, 40, 2], [5, 0, 38]],
    [[7, 7], [7, 7]],  # one colour for every cell
], ids=["narrow-range", "wide-range", "constant"])
def test_confusion_labels_contrast_with_the_cell_drawn_under_them(figures, tmp_path, matrix):
    from matplotlib.colors import to_rgba

    matrix = np.asarray(matrix)
    report.plot_confusion(matrix, [f"c{i}" for i in range(len(matrix))], tmp_path / "cm.png",
                          "t")
    ax = figures[0].axes[0]
    image = ax.images[0]
    labels = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(labels) == matrix.size
    for (i, j), text in labels.items():
        assert text.get_text() == str(matrix[i, j])
        cell = image.cmap(image.norm(matrix[i, j]))
        mine = to_rgba(text.get_color())
        other = to_rgba("black" if text.get_color() == "white" else "white")
        assert _contrast(mine, cell) >= _contrast(other, cell), (i, j, text.get_color())
        assert _contrast(mine, cell) >= 4.5  # WCAG AA for small text


def test_text_colour_extremes():
    assert report.text_colour((1.0, 1.0, 1.0, 1.0)) == "black"
    assert report.text_colour((0.03, 0.19, 0.42, 1.0)) == "white"  # Blues' darkest


CJK_NAMES = ["猫", "狗", "飛行機"]


def _font_with(path, family, text):
    """A tiny TrueType font whose only glyphs (empty squares' outlines) are `text`'s."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    chars = sorted(set(text))
    names = [".notdef"] + [f"g{ord(c)}" for c in chars]
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({ord(c): f"g{ord(c)}" for c in chars})
    glyphs = {}
    for name in names:
        pen = TTGlyphPen(None)
        pen.moveTo((100, 0)), pen.lineTo((100, 700)), pen.lineTo((800, 700)), pen.closePath()
        glyphs[name] = pen.glyph()
    fb.setupGlyf(glyphs)
    fb.setupHorizontalMetrics({name: (1000, 100) for name in names})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": family, "styleName": "Regular"})
    fb.setupOS2()
    fb.setupPost()
    fb.save(str(path))
    return path


def _draw_every_plot(tmp_path, names):
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.3, 0.6],
               "val_accuracy": [0.2, 0.5]}
    report.plot_history(history, tmp_path / "plot.png", f"Training on {names[0]}")
    report.plot_confusion(np.eye(len(names), dtype=int), names, tmp_path / "cm.png",
                          f"Confusion matrix, {names[-1]}")
    report.plot_compare({n: [0.5, 0.6] for n in names}, tmp_path / "compare.png", names[0], "acc")
    report.plot_curves({n: [history] for n in names}, tmp_path / "curves.png", names[1],
                       "test")


def test_cjk_class_names_use_an_installed_font_that_has_them(tmp_path, monkeypatch):
    from matplotlib import font_manager

    font = _font_with(tmp_path / "kvt-test-cjk.ttf", "Kvt Test CJK", "".join(CJK_NAMES))
    monkeypatch.setattr(font_manager.fontManager, "ttflist", list(font_manager.fontManager.ttflist))
    font_manager.fontManager.addfont(str(font))
    assert report.font_families(CJK_NAMES) == ["DejaVu Sans", "Kvt Test CJK"]
    assert report.font_families(["cat", "dog"]) is None  # the default has the glyphs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _draw_every_plot(tmp_path, CJK_NAMES)
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_glyphs_no_font_has_fall_back_without_warnings(tmp_path, capfd):
    names = ["\U000f0001 private", "\U000f0002 use"]  # no installed font draws these
    assert report.font_families(names) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _draw_every_plot(tmp_path, names)
    assert capfd.readouterr().err == ""
