"""The heat-map figure of ``medinfer predict ... --overlay``, drawn with numpy alone (the device has no image
library): the slice in a lung window at full resolution (small slices enlarged to about 512 pixels), the window
scores interpolated between the window centres in a colour scale, the region at or above the operating threshold
outlined, a colour bar with its ticks and the threshold marked, and a caption. Text uses a built-in 5x7 pixel font.

:func:`figure` returns the RGB array; :func:`medinfer.tools.dicom.write_overlay` encodes it as PNG
(:func:`png_bytes`: zlib + struct, no image library); the DICOM Secondary Capture is the same figure at the source's
resolution (:func:`medinfer.tools.dicom.overlay_figure`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

OVERLAY_WINDOW = (-1350.0, 150.0)  # lung window for the grey background of the overlay

WHITE, CYAN = (255, 255, 255), (0, 230, 255)
ALPHA = 0.7  # opacity of the heat colour at score 1 (score 0 leaves the slice untouched)
# A perceptually ordered dark-to-bright scale (anchors sampled from matplotlib's "inferno").
_ANCHORS = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
                     (250, 193, 39), (252, 255, 164)], dtype=np.float64)

_GLYPHS = {  # 5 columns x 7 rows, row by row; '#' is ink
    "0": ".###.#...##..###.#.###..##...#.###.", "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#...#####", "3": "#####...#...#.....#.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.", "5": "######....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.", "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.", "9": ".###.#...##...#.####....#...#..##..",
    "A": ".###.#...##...#######...##...##...#", "B": "####.#...##...#####.#...##...#####.",
    "C": ".###.#...##....#....#....#...#.###.", "D": "####.#...##...##...##...##...#####.",
    "E": "######....#....####.#....#....#####", "F": "######....#....####.#....#....#....",
    "G": ".###.#...##....#.####...##...#.####", "H": "#...##...##...#######...##...##...#",
    "I": ".###...#....#....#....#....#...###.", "J": "..###...#....#....#....#.#..#..##..",
    "K": "#...##..#.#.#..##...#.#..#..#.#...#", "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##.#.##...##...##...#", "N": "#...##...###..##.#.##..###...##...#",
    "O": ".###.#...##...##...##...##...#.###.", "P": "####.#...##...#####.#....#....#....",
    "Q": ".###.#...##...##...##.#.##..#..##.#", "R": "####.#...##...#####.#.#..#..#.#...#",
    "S": ".#####....#.....###.....#....#####.", "T": "#####..#....#....#....#....#....#..",
    "U": "#...##...##...##...##...##...#.###.", "V": "#...##...##...##...##...#.#.#...#..",
    "W": "#...##...##...##.#.##.#.##.#.#.#.#.", "X": "#...##...#.#.#...#...#.#.#...##...#",
    "Y": "#...##...#.#.#...#....#....#....#..", "Z": "#####....#...#...#...#...#....#####",
    ".": "..........................##...##..", ",": ".....................##....#...#...",
    ":": "......##...##........##...##.......", "-": "...............#####...............",
    "(": "...#...#...#....#....#.....#.....#.", ")": ".#.....#.....#....#....#...#...#...",
    "=": "..........#####.....#####..........", ">": ".#.....#.....#.....#...#...#...#...",
    "<": "...#...#...#...#.....#.....#.....#.", "%": "##...##..#...#...#...#...#..##...##",
    "/": ".........#...#...#...#...#.........", "_": "..............................#####",
    "+": ".......#....#..#####..#....#.......", "*": ".......#..#.#.#.###.#.#.#..#.......",
    "#": ".#.#..#.#.#####.#.#.#####.#.#..#.#.", "'": "..#....#...#.......................",
    "?": ".###.#...#....#...#...#.........#..", " ": "...................................",
    ";": "......##...##........##....#...#...",
}
GLYPHS = {k: np.array([c == "#" for c in v], dtype=bool).reshape(7, 5) for k, v in _GLYPHS.items()}


def colours(values: np.ndarray) -> np.ndarray:
    """(..., 3) float RGB in 0..255 of ``values`` (clipped to 0..1) on the colour scale."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(int)
    hi = np.minimum(lo + 1, len(_ANCHORS) - 1)
    w = (v - lo)[..., None]
    return _ANCHORS[lo] * (1 - w) + _ANCHORS[hi] * w


def text_size(text: str, scale: int) -> tuple[int, int]:
    """(height, width) in pixels of ``text`` drawn at ``scale``."""
    return 7 * scale, max(0, 6 * scale * len(text) - scale)


def draw_text(canvas: np.ndarray, text: str, row: int, col: int, colour: tuple[int, int, int], scale: int) -> None:
    """Draw ``text`` (upper-cased; a character the font lacks becomes '?') with its top left at (row, col),
    clipped to the canvas."""
    for i, char in enumerate(text.upper()):
        glyph = GLYPHS.get(char, GLYPHS["?"])
        ink = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        r0, c0 = row, col + i * 6 * scale
        r1, c1 = min(r0 + ink.shape[0], canvas.shape[0]), min(c0 + ink.shape[1], canvas.shape[1])
        if r0 < 0 or c0 < 0 or r1 <= r0 or c1 <= c0:
            continue
        canvas[r0:r1, c0:c1][ink[: r1 - r0, : c1 - c0]] = colour


def wrap(lines: Sequence[str], room: int) -> list[str]:
    """``lines`` broken at spaces so that none is longer than ``room`` characters (a longer word is cut)."""
    out: list[str] = []
    for text in lines:
        current = ""
        for word in text.split():
            if current and len(current) + 1 + len(word) > room:
                out.append(current)
                current = ""
            current = f"{current} {word}" if current else word[:room]
        out.append(current)
    return out


def _axis_weights(src: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (lower, upper) and weights to interpolate linearly at ``src`` between ``knots`` (clamped)."""
    pos = np.interp(src, knots, np.arange(len(knots), dtype=np.float64))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(knots) - 1)
    return lo, hi, pos - lo


def _bilinear(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, out_r: np.ndarray, out_c: np.ndarray
              ) -> np.ndarray:
    r0, r1, wr = _axis_weights(out_r, rows)
    c0, c1, wc = _axis_weights(out_c, cols)
    top = grid[r0][:, c0] * (1 - wc) + grid[r0][:, c1] * wc
    bottom = grid[r1][:, c0] * (1 - wc) + grid[r1][:, c1] * wc
    return top * (1 - wr[:, None]) + bottom * wr[:, None]


def score_field(shape: tuple[int, int], centres: np.ndarray, scores: np.ndarray, blocks: np.ndarray,
                scale: int) -> np.ndarray:
    """The scores on the enlarged pixel grid: linear between the centres of a full sliding-window grid (the same
    value at each centre, so the outline at the threshold passes between windows above and below it); any other
    layout (one --center patch) keeps its painted ``blocks``."""
    out_r = (np.arange(shape[0] * scale) + 0.5) / scale - 0.5
    out_c = (np.arange(shape[1] * scale) + 0.5) / scale - 0.5
    rows, cols = np.unique(centres[:, 0]), np.unique(centres[:, 1])
    if len(centres) > 1 and len(rows) * len(cols) == len(centres):
        grid = np.full((len(rows), len(cols)), np.nan)
        grid[np.searchsorted(rows, centres[:, 0]), np.searchsorted(cols, centres[:, 1])] = scores
        if not np.isnan(grid).any():
            return _bilinear(grid, rows.astype(float), cols.astype(float), out_r, out_c)
    return np.kron(blocks, np.ones((scale, scale)))


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` that touch a pixel outside it (4-neighbourhood), thickened inwards to ``width``."""
    edge = np.zeros_like(mask)
    inner = mask.copy()
    for _ in range(max(1, width)):
        core = inner.copy()
        core[1:, :] &= inner[:-1, :]
        core[:-1, :] &= inner[1:, :]
        core[:, 1:] &= inner[:, :-1]
        core[:, :-1] &= inner[:, 1:]
        edge |= inner & ~core
        inner = core
    return edge


def figure(hu: np.ndarray, centres: np.ndarray, scores: np.ndarray, blocks: np.ndarray, *,
           threshold: float | None, window: tuple[float, float], score_name: str = "score",
           caption: Sequence[str] = (), min_size: int = 512) -> np.ndarray:
    """The overlay figure as an (H, W, 3) uint8 array.

    Args:
        hu: the slice in HU (rows, cols).
        centres: window centres (row, col); scores: their scores (0..1).
        blocks: the window scores painted on the slice grid (used when the centres are not a full grid).
        threshold: the operating threshold (outlined and marked on the colour bar), or None.
        window: the grey window (HU low, high) for the slice.
        score_name: the colour bar's title, e.g. ``p(nodule)``.
        caption: lines of text above the image (model, file, how the map was made).
        min_size: small slices are enlarged by an integer factor until their longer side reaches this.
    """
    h, w = hu.shape
    scale = max(1, -(-min_size // max(h, w)))
    grey = np.clip((np.asarray(hu, np.float64) - window[0]) / (window[1] - window[0]), 0.0, 1.0)
    out_r, out_c = (np.arange(h * scale) + 0.5) / scale - 0.5, (np.arange(w * scale) + 0.5) / scale - 0.5
    grey = _bilinear(grey, np.arange(h, dtype=float), np.arange(w, dtype=float), out_r, out_c)[..., None] * 255.0
    field = np.clip(score_field((h, w), np.asarray(centres), np.asarray(scores, np.float64),
                                np.asarray(blocks, np.float64), scale), 0.0, 1.0)
    alpha = (ALPHA * field)[..., None]
    image = grey * (1 - alpha) + colours(field) * alpha
    if threshold is not None:
        image[_outline(field >= threshold, max(1, scale // 2))] = CYAN

    ts = 2 if w * scale >= 384 else 1  # text scale
    line = 7 * ts + 4 * ts
    pad = 6 * ts
    bar_w, gap = 10 * ts, 8 * ts
    labels_w = max(text_size("0.000", ts)[1], text_size(score_name, ts)[1] - bar_w - gap) + 4 * ts
    width = pad + w * scale + gap + bar_w + gap + labels_w + pad
    lines = wrap(caption, (width - 2 * pad + ts) // (6 * ts))
    top = pad + line * len(lines) + line  # caption lines, then the colour bar's title line
    height = top + h * scale + pad
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[top:top + h * scale, pad:pad + w * scale] = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    for i, text in enumerate(lines):
        draw_text(canvas, text, pad + i * line, pad, WHITE, ts)

    # the colour bar: 1 at the top, 0 at the bottom, the image's own height
    x0 = pad + w * scale + gap
    n = h * scale
    values = 1.0 - (np.arange(n) + 0.5) / n
    canvas[top:top + n, x0:x0 + bar_w] = np.clip(colours(values)[:, None, :] + 0.5, 0, 255).astype(np.uint8)
    draw_text(canvas, score_name, top - line, max(pad, x0 + bar_w - text_size(score_name, ts)[1]), WHITE, ts)

    def row_of(v: float) -> int:
        return top + int(round((1.0 - v) * (n - 1)))

    def label(v: float, text: str, colour: tuple[int, int, int]) -> None:
        r = min(max(row_of(v) - 3 * ts, top - 2 * ts), height - 7 * ts)  # centred on its value, inside the canvas
        draw_text(canvas, text, r, x0 + bar_w + 4 * ts, colour, ts)

    marked = row_of(threshold) if threshold is not None else None
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        if marked is None or abs(row_of(v) - marked) > 9 * ts:
            label(v, f"{v:g}", WHITE)
    if threshold is not None and marked is not None:  # a line across the bar, and its value beside it
        canvas[max(marked - ts // 2, 0):marked + ts - ts // 2 + 1, x0 - 2 * ts:x0 + bar_w + 2 * ts] = CYAN
        label(threshold, f"{threshold:.3g}", CYAN)
    return canvas


def heat_map(shape: tuple[int, int], centres: np.ndarray, scores: np.ndarray, cell: int) -> np.ndarray:
    """Each window's score painted over the ``cell`` x ``cell`` block around its centre (max where blocks meet)."""
    heat = np.zeros(shape, dtype=np.float32)
    half = max(1, cell // 2)
    for (r, c), s in zip(centres, scores):
        block = heat[max(0, r - half):r + half + 1, max(0, c - half):c + half + 1]
        np.maximum(block, np.float32(s), out=block)
    return heat


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 array as PNG (filter 0 per row, zlib), with no image library."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"png_bytes needs an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
