"""The --overlay figure (numpy only): the slice at full resolution, the heat map in a colour scale, the threshold
outlined and marked on a colour bar, a caption; written by ``medinfer predict ... --overlay`` as a PNG."""

from __future__ import annotations

import io
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from medinfer.tools import overlay
from medinfer.tools.overlay import heat_map
from medinfer.windows import window_centres

from ..helpers import tiny

WINDOW = (-1350.0, 150.0)


def _slice(n: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A flat -600 HU slice; window scores 1.0 in the top-left quarter of the window grid, 0.0 elsewhere."""
    hu = np.full((n, n), -600.0, np.float32)
    centres = window_centres((n, n), 25)
    scores = np.where((centres[:, 0] < n // 2) & (centres[:, 1] < n // 2), 1.0, 0.0)
    return hu, centres, scores, heat_map((n, n), centres, scores, 25)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _image_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the slice in the figure: the bounding box of the untouched (score 0) grey."""
    grey = round((-600.0 - WINDOW[0]) / (WINDOW[1] - WINDOW[0]) * 255)
    where = np.argwhere(np.all(rgb == grey, axis=2))
    return where[:, 0].min(), where[:, 0].max(), where[:, 1].min(), where[:, 1].max()


def test_a_small_slice_is_drawn_enlarged_beside_a_colour_bar() -> None:
    hu, centres, scores, blocks = _slice()
    rgb = overlay.figure(hu, centres, scores, blocks, threshold=0.5, window=WINDOW, score_name="p(nodule)",
                         caption=["tiny_ct 0.0.1: CT_small.dcm"])
    top, bottom, left, right = _image_box(rgb)
    assert (bottom - top + 1, right - left + 1) == (512, 512)  # 128 x 128 shown at 4x
    assert top > 20 and rgb[:top].any()  # the caption above it
    # the colour bar right of the image: the scale's top colour at the image's top row, darker towards 0
    top_colour = overlay.colours(1.0 - 0.5 / 512)
    bar = [c for c in range(right + 1, rgb.shape[1]) if np.abs(rgb[top, c] - top_colour).max() <= 1]
    assert bar, "no colour bar beside the image"
    column = rgb[top:bottom + 1, bar[len(bar) // 2]].astype(int).sum(axis=1)
    assert column[0] > column[256] > column[-1]  # bright (1) at the top, dark (0) at the bottom


def test_high_scores_are_coloured_low_scores_leave_the_slice_and_the_threshold_is_outlined() -> None:
    hu, centres, scores, blocks = _slice()
    rgb = overlay.figure(hu, centres, scores, blocks, threshold=0.5, window=WINDOW)
    grey = round((-600.0 - WINDOW[0]) / (WINDOW[1] - WINDOW[0]) * 255)
    top, bottom, left, right = _image_box(rgb)
    hot = rgb[top + 4 * 12 + 2, left + 4 * 12 + 2].astype(int)  # window centre (12, 12): score 1
    assert hot[0] > hot[2] + 40  # warm, not grey
    assert (rgb[top + 4 * 112 + 2, left + 4 * 112 + 2] == grey).all()  # window centre (112, 112): score 0
    inside = np.all(rgb[top:bottom + 1, left:right + 1] == overlay.CYAN, axis=2)
    rows, cols = np.nonzero(inside)
    assert inside.any() and rows.max() < 4 * 87 and cols.max() < 4 * 87  # between the hot and the cold windows
    below = overlay.figure(hu, centres, scores * 0.3, blocks * 0.3, threshold=0.5, window=WINDOW)
    assert not np.all(below[top:bottom + 1, left:right + 1] == overlay.CYAN, axis=2).any()  # nothing to outline


def test_the_threshold_is_marked_on_the_colour_bar_at_its_value() -> None:
    hu, centres, scores, blocks = _slice()
    marks = {}
    for t in (0.2, 0.8):
        rgb = overlay.figure(hu, centres, scores * 0.1, blocks * 0.1, threshold=t, window=WINDOW)
        rows = np.nonzero(np.all(rgb == overlay.CYAN, axis=2).sum(axis=1) >= 10)[0]  # the line across the bar
        marks[t] = rows.mean()
    assert marks[0.8] < marks[0.2]  # a higher threshold sits higher on the bar


def test_the_font_draws_every_character_it_has_and_tells_digits_apart() -> None:
    assert all(g.shape == (7, 5) and g.any() != (k == " ") for k, g in overlay.GLYPHS.items())
    drawn = {}
    for text in ("0.5", "0.6", "P(NODULE)"):
        canvas = np.zeros((20, 80, 3), np.uint8)
        overlay.draw_text(canvas, text, 2, 2, overlay.WHITE, 2)
        drawn[text] = canvas
        assert canvas.any()
    assert not np.array_equal(drawn["0.5"], drawn["0.6"])
    assert overlay.wrap(["a long caption line"], 8) == ["a long", "caption", "line"]


def test_one_centre_keeps_its_square() -> None:
    hu = np.full((128, 128), -600.0, np.float32)
    centres, scores = np.array([[64, 70]]), np.array([0.9])
    rgb = overlay.figure(hu, centres, scores, heat_map((128, 128), centres, scores, 100), threshold=0.5,
                         window=WINDOW)
    top, bottom, left, right = _image_box(rgb)
    box = np.argwhere(np.all(rgb[top:bottom + 1, left:right + 1] == overlay.CYAN, axis=2))
    assert np.ptp(box[:, 0]) == np.ptp(box[:, 1]) == 4 * 101 - 1  # the window's 101 x 101 px block, at 4x
    assert box[:, 0].min() == 4 * (64 - 50) and box[:, 1].min() == 4 * (70 - 50)


def test_cli_overlay_is_a_full_resolution_png_with_a_colour_bar(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    bundle = tiny.build_ct(tmp_path / "tiny_ct", threshold=0.4)
    out = tmp_path / "heat.png"
    proc = subprocess.run([sys.executable, "-m", "medinfer", "predict", str(bundle), get_testdata_file("CT_small.dcm"),
                           "--overlay", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    width, height = _png_size(out.read_bytes())
    assert height >= 512 and width >= 512 + 60  # the 128 x 128 slice at 4x, the colour bar beside it
    image = pytest.importorskip("PIL.Image")
    decoded = np.asarray(image.open(io.BytesIO(out.read_bytes())).convert("RGB"))
    assert decoded.shape == (height, width, 3) and np.all(decoded == overlay.CYAN, axis=2).any()
    assert zlib.crc32(out.read_bytes())  # written whole
