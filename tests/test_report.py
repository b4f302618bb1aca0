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
