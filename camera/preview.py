"""A picture of a ``CVK_CAMERA``: orthographic top / front / side panels of every view's camera path.

Each panel shows, per view (one colour per view, from :data:`PALETTE`):

- the camera centres as a polyline, getting brighter from the first frame to the last, with a filled dot
  and a ``0`` label on frame 0 and an arrowhead (plus the last frame's index) at the last frame;
- each frame's camera as a small frustum: apex at the camera centre, the four rays through the image
  corners (from ``K`` and ``width × height``) cut at a depth proportional to the scene's extent, the image
  rectangle, and a small triangle on the image's top edge (the camera's "up", −y in OpenCV);
- a grid in world units (the zero lines brighter: the world origin), the panel's axes and a legend.

Projections (world in OpenCV convention, x right, y down, z forward; screen rows grow downward):

- ``top``: the x–z plane seen from above, looking along +y: x to the right, z up the panel;
- ``front``: the x–y plane looking along +z (what an identity camera sees): x to the right, y down;
- ``side``: the z–y plane looking along −x: z to the right, y down.

Pure torch + numpy + PIL; deterministic (no randomness, a fixed font and palette).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .path import CameraPath

PROJECTIONS = ("top", "front", "side")

#: One colour per view (RGB 0..255), cycled when there are more views than colours.
PALETTE = (
    (66, 165, 245),    # blue
    (255, 112, 67),    # orange
    (102, 187, 106),   # green
    (255, 202, 40),    # amber
    (186, 104, 200),   # purple
    (38, 198, 218),    # cyan
    (236, 64, 122),    # pink
    (212, 225, 87),    # lime
)
BACKGROUND = (18, 20, 24)
GRID, GRID_ZERO = (36, 40, 48), (70, 76, 90)
TEXT, TEXT_DIM = (225, 228, 235), (140, 146, 158)

FRUSTUM_DEPTH = 0.1   # frustum depth as a fraction of the extent of the camera centres
MAX_FRUSTUMS = 64     # per view; longer paths draw this many, evenly spaced, first and last always
LEGEND_ROWS = 12      # legend entries shown before "+N more"
_SS = 2               # supersampling factor (drawn at _SS × size, box-filtered down)


@dataclass(frozen=True)
class _Projection:
    """World → panel: ``col = h_sign · p[h]``, ``row = v_sign · p[v]`` (rows grow downward)."""
    h: int
    h_sign: float
    v: int
    v_sign: float
    title: str


_PROJ = {
    "top": _Projection(0, 1.0, 2, -1.0, "TOP  x-z, looking along +y (down)"),
    "front": _Projection(0, 1.0, 1, 1.0, "FRONT  x-y, looking along +z"),
    "side": _Projection(2, 1.0, 1, 1.0, "SIDE  z-y, looking along -x"),
}
_AXIS = "xyz"


def parse_projections(projections) -> list[str]:
    """``"top,front,side"`` (or a sequence of names) → a list of names from :data:`PROJECTIONS`."""
    names = projections.split(",") if isinstance(projections, str) else list(projections)
    names = [str(n).strip().lower() for n in names]
    if not names or any(not n for n in names):
        raise ValueError(f"projections must be a comma-separated list of names from {PROJECTIONS}, "
                         f"got {projections!r}")
    for n in names:
        if n not in _PROJ:
            raise ValueError(f"unknown projection {n!r} in {projections!r}; expected names from {PROJECTIONS}")
    if len(set(names)) != len(names):
        raise ValueError(f"projections {projections!r} names a projection twice")
    return names


def frustum_points(path: CameraPath) -> tuple[torch.Tensor, torch.Tensor, float]:
    """World points of every frame's camera drawing.

    Returns ``centres`` ``(V, F, 3)``, ``shape`` ``(V, F, 7, 3)`` (image corners top-left, top-right,
    bottom-right, bottom-left, then the "up" triangle: left, tip, right) and the frustum depth used.
    """
    K, c2w = path.K, path.c2w
    if not (torch.isfinite(K).all() and torch.isfinite(c2w).all()):
        raise ValueError("camera path has non-finite values in K or c2w")
    centres = c2w[..., :3, 3]
    lo, hi = centres.reshape(-1, 3).min(0).values, centres.reshape(-1, 3).max(0).values
    extent = float((hi - lo).max())
    scale = float(centres.abs().max()) + 1.0
    if not extent > 1e-9 * scale:      # all cameras at one place: frustums of unit-scene size
        extent = 1.0
    depth = FRUSTUM_DEPTH * extent

    w, h = float(path.width), float(path.height)
    pix = torch.tensor([[0, 0], [w, 0], [w, h], [0, h],
                        [0.3 * w, 0], [0.5 * w, -0.25 * h], [0.7 * w, 0]], dtype=torch.float64, device=K.device)
    pix = torch.cat([pix, torch.ones(len(pix), 1, dtype=torch.float64, device=K.device)], 1)   # (7, 3)
    det = torch.linalg.det(K)
    if not (det.abs() > 0).all():
        v, f = [int(i) for i in torch.nonzero(~(det.abs() > 0))[0]]
        raise ValueError(f"camera path: K of view {v}, frame {f} is singular: {K[v, f].tolist()}")
    rays = torch.einsum("vfij,kj->vfki", torch.linalg.inv(K), pix)                   # (V, F, 7, 3)
    z = rays[..., 2:3]
    z = torch.where(z.abs() > 1e-12, z, torch.ones_like(z))
    pts_cam = rays / z * depth
    pts = torch.einsum("vfij,vfkj->vfki", c2w[..., :3, :3], pts_cam) + centres[:, :, None, :]
    return centres, pts, depth


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except TypeError:    # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _mix(c, a: float) -> tuple[int, int, int]:
    """``a`` of colour ``c`` over the background."""
    return tuple(int(round(b + (x - b) * a)) for x, b in zip(c, BACKGROUND))


def _nice_step(span: float) -> float:
    raw = span / 6.0
    e = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * e:
            return m * e
    return 10.0 * e


def _frame_indices(frames: int) -> list[int]:
    if frames <= MAX_FRUSTUMS:
        return list(range(frames))
    return sorted({int(round(i * (frames - 1) / (MAX_FRUSTUMS - 1))) for i in range(MAX_FRUSTUMS)})


def _text(draw, xy, s, font, fill):
    draw.text((float(xy[0]), float(xy[1])), s, font=font, fill=fill)


def _text_size(draw, s, font):
    l, t, r, b = draw.textbbox((0, 0), s, font=font)
    return r - l, b - t, t


def _arrow_head(draw, tip, direction, size, fill):
    d = np.asarray(direction, dtype=np.float64)
    n = float(np.hypot(*d))
    if not n > 1e-9:
        return
    d = d / n
    p = np.array([-d[1], d[0]])
    tip = np.asarray(tip, dtype=np.float64)
    base = tip - d * size
    pts = [tuple(tip), tuple(base + p * size * 0.5), tuple(base - p * size * 0.5)]
    draw.polygon([(float(x), float(y)) for x, y in pts], fill=fill)


@dataclass(frozen=True)
class _Canvas:
    """A panel being drawn: ``S × S`` pixels (``_SS`` × the output size), ``u`` pixels per design pixel (the
    drawing is designed at 512), and the two fonts."""
    img: Image.Image
    draw: ImageDraw.ImageDraw
    S: int
    u: float
    font: object
    small: object

    @classmethod
    def new(cls, size: int) -> "_Canvas":
        S = size * _SS
        u = S / 512.0
        img = Image.new("RGB", (S, S), BACKGROUND)
        return cls(img, ImageDraw.Draw(img), S, u, _font(max(9 * _SS, int(round(13 * u)))),
                   _font(max(8 * _SS, int(round(11 * u)))))

    @property
    def header(self) -> int:
        """Height of the title bar."""
        return max(16 * _SS, int(round(30 * self.u)))


@dataclass(frozen=True)
class _Fit:
    """World → pixels for one panel: the projected points, and the scale that fits them into the plot box
    (below the header, inside a margin) with one scale on both axes."""
    c2: np.ndarray        # (V, F, 2) camera centres in panel units
    s2: np.ndarray        # (V, F, 7, 2) frustum points in panel units
    mid: np.ndarray       # (2,) centre of the projected points
    box_c: np.ndarray     # (2,) centre of the plot box, pixels
    scale: float          # pixels per world unit

    def to_px(self, q) -> np.ndarray:
        return (np.asarray(q) - self.mid) * self.scale + self.box_c


def _fit(pr: _Projection, cv: _Canvas, centres: np.ndarray, shapes: np.ndarray) -> _Fit:
    def proj(p):       # (..., 3) world → (..., 2) panel units (not yet scaled)
        return np.stack([pr.h_sign * p[..., pr.h], pr.v_sign * p[..., pr.v]], -1)

    c2, s2 = proj(centres), proj(shapes)
    allp = np.concatenate([c2.reshape(-1, 2), s2.reshape(-1, 2)], 0)
    lo, hi = allp.min(0), allp.max(0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    if not span > 1e-12 * (1.0 + float(np.abs(allp).max())):
        span = 1.0
    S, header = cv.S, cv.header
    margin = max(8 * _SS, int(round(0.08 * S)))
    box_l, box_t, box_r, box_b = margin, header + margin, S - margin, S - margin
    box_c = np.array([(box_l + box_r) / 2, (box_t + box_b) / 2])
    scale = min(box_r - box_l, box_b - box_t) / span
    return _Fit(c2, s2, (lo + hi) / 2, box_c, scale)


def _draw_grid(cv: _Canvas, fit: _Fit) -> float:
    """Grid lines in world units, the zero lines (world origin) brighter; returns the grid step."""
    S, header, draw = cv.S, cv.header, cv.draw
    step = _nice_step(max(S, S - header) / fit.scale)
    for axis in (0, 1):
        lo_w = fit.mid[axis] + (0 - fit.box_c[axis]) / fit.scale
        hi_w = fit.mid[axis] + (S - fit.box_c[axis]) / fit.scale
        k0, k1 = math.ceil(lo_w / step), math.floor(hi_w / step)
        for k in range(k0, k1 + 1):
            pos = (k * step - fit.mid[axis]) * fit.scale + fit.box_c[axis]
            colour = GRID_ZERO if k == 0 else GRID
            if axis == 0:
                draw.line([(pos, header), (pos, S)], fill=colour, width=max(1, _SS // 2 + (k == 0)))
            else:
                if pos >= header:
                    draw.line([(0, pos), (S, pos)], fill=colour, width=max(1, _SS // 2 + (k == 0)))
    return step


class _Ink:
    """Where the panel already has ink (anything but background and grid), so that the legend, the axes glyph
    and the frame labels go where they cover no track; each placed item is inked in turn."""

    def __init__(self, cv: _Canvas):
        arr = np.asarray(cv.img)
        free = np.zeros(arr.shape[:2], dtype=bool)
        for c in (BACKGROUND, GRID, GRID_ZERO):
            free |= (arr == np.array(c, dtype=arr.dtype)).all(-1)
        self.mask = ~free
        self.top, self.S = cv.header, cv.S

    def cost(self, box) -> float:
        """Inked pixels under ``box`` (x0, y0, x1, y1); a box outside the plot area costs more than any."""
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < self.top or x1 > self.S or y1 > self.S:
            return math.inf
        return float(self.mask[int(y0):int(math.ceil(y1)), int(x0):int(math.ceil(x1))].sum())

    def place(self, boxes) -> tuple[int, float]:
        """The first box with no ink under it, else the one with the least: ``(index, its cost)``; that box is
        inked."""
        costs = [self.cost(b) for b in boxes]
        i = next((k for k, c in enumerate(costs) if c == 0), int(np.argmin(costs)))
        x0, y0, x1, y1 = boxes[i]
        self.mask[max(0, int(y0)):max(0, int(math.ceil(y1))), max(0, int(x0)):max(0, int(math.ceil(x1)))] = True
        return i, costs[i]


def _corner_boxes(cv: _Canvas, box) -> list[tuple]:
    """``box`` (x0, y0, x1, y1) in its corner of the plot area, then mirrored into the other three corners (its
    distances to the nearest edges kept)."""
    x0, y0, x1, y1 = box
    S, top, w, h = cv.S, cv.header, x1 - x0, y1 - y0
    left, right = x0, S - x1
    upper, lower = y0 - top, S - y1
    xs = [x0, S - left - w] if left <= right else [x0, right]
    ys = [y0, S - upper - h] if upper <= lower else [y0, top + lower]
    return [(x, y, x + w, y + h) for y in ys for x in xs]


#: Where a frame label may go around its point, in order of preference: (dx, dy) signs (0: centred) and a
#: distance multiplier. The first two are frame 0's and the last frame's usual places (up-right, down-right).
_LABEL_SPOTS = [(dx, dy, k) for k in (1.0, 2.5, 4.0, 5.5) for dx, dy in
                ((1, -1), (1, 1), (-1, -1), (-1, 1), (0, -1), (0, 1), (1, 0), (-1, 0))]


def _draw_label(cv: _Canvas, ink: _Ink, point, text: str, fill, first_spot: int):
    """``text`` next to ``point`` (a frame's dot or arrow tip) where it covers no track if there is such a spot,
    with a background-coloured outline so it stays legible where there is none."""
    draw, font = cv.draw, cv.small
    halo = max(1, int(round(1.5 * cv.u)))
    l, t, r, b = draw.textbbox((0, 0), text, font=font, stroke_width=halo)
    w, h = r - l, b - t
    gap = max(3.0 * _SS, 5.5 * cv.u) + 2 * cv.u                  # clear of the dot
    spots = [_LABEL_SPOTS[first_spot]] + [s for k, s in enumerate(_LABEL_SPOTS) if k != first_spot]
    boxes = []
    for dx, dy, k in spots:
        x = point[0] + dx * gap * k - (0 if dx > 0 else w if dx < 0 else w / 2)
        y = point[1] + dy * gap * k - (0 if dy > 0 else h if dy < 0 else h / 2)
        boxes.append((x, y, x + w, y + h))
    i, _ = ink.place(boxes)
    draw.text((float(boxes[i][0] - l), float(boxes[i][1] - t)), text, font=font, fill=fill,
              stroke_width=halo, stroke_fill=BACKGROUND)


def _draw_view(cv: _Canvas, fit: _Fit, v: int) -> list[tuple]:
    """View ``v``: a frustum per drawn frame, the path, the last frame's arrowhead, frame 0's dot. Returns its
    frame labels, drawn once every view is: ``(point, text, colour, preferred spot)``."""
    draw, u = cv.draw, cv.u
    F = fit.c2.shape[1]
    w_path = max(2.0 * _SS, 3.0 * u)
    w_fr = max(1.0 * _SS, 1.4 * u)
    r_dot = max(3.0 * _SS, 5.5 * u)
    head = max(7.0 * _SS, 13.0 * u)
    colour = PALETTE[v % len(PALETTE)]
    ramp = (lambda f: 1.0) if F == 1 else (lambda f: f / (F - 1))
    pc = fit.to_px(fit.c2[v])                        # (F, 2)
    ps = fit.to_px(fit.s2[v])                        # (F, 7, 2)
    for f in _frame_indices(F):
        col = _mix(colour, 0.4 + 0.6 * ramp(f))
        apex = tuple(pc[f])
        c = [tuple(x) for x in ps[f]]
        width = int(round(w_fr))
        for k in range(4):
            draw.line([apex, c[k]], fill=col, width=width)
        draw.line([c[0], c[1], c[2], c[3], c[0]], fill=col, width=width, joint="curve")
        draw.line([c[4], c[5], c[6]], fill=col, width=width, joint="curve")
    for f in range(1, F):
        draw.line([tuple(pc[f - 1]), tuple(pc[f])], fill=_mix(colour, 0.5 + 0.5 * ramp(f)),
                  width=int(round(w_path)))
    labels = []
    # last frame: an arrowhead along the last segment of non-zero length (none for a still camera)
    if F > 1:
        last = pc[-1]
        for f in range(F - 2, -1, -1):
            d = last - pc[f]
            if np.hypot(*d) > 0.5 * head:
                _arrow_head(draw, last, d, head, colour)
                break
        labels.append((tuple(last), str(F - 1), colour, 1))
    x, y = pc[0]
    draw.ellipse([x - r_dot, y - r_dot, x + r_dot, y + r_dot], fill=colour, outline=TEXT,
                 width=max(1, int(round(0.8 * u))))
    labels.append(((x, y), "0", TEXT, 0))
    return labels


def _draw_labels(cv: _Canvas, ink: _Ink, labels: list[tuple]):
    """The frame labels; a text that several views share at one spot (CVD's views all start at one camera) is
    written once."""
    near = max(3.0 * _SS, 5.5 * cv.u)
    done = []
    for point, text, colour, spot in labels:
        if any(t == text and math.dist(p, point) <= near for p, t in done):
            continue
        done.append((point, text))
        _draw_label(cv, ink, point, text, colour, spot)


def _draw_axes(cv: _Canvas, ink: _Ink, pr: _Projection):
    """The panel's axes: +h to the right, +v up (top) or down (front, side), in a corner of the plot area where
    they cover no track (the usual corner first: bottom-left for top, top-left for front and side), on a dark
    box where every corner has tracks."""
    draw, u, S, header, font = cv.draw, cv.u, cv.S, cv.header, cv.font
    g = max(22.0 * _SS, 40.0 * u)
    ox = 14.0 * u + 2 * _SS
    oy = (S - 14.0 * u - 2 * _SS) if pr.v_sign < 0 else (header + 14.0 * u + 2 * _SS)
    vy = oy - g if pr.v_sign < 0 else oy + g
    hl, vl = "+" + _AXIS[pr.h], "+" + _AXIS[pr.v]
    htw, hth, htt = _text_size(draw, hl, font)
    vtw, vth, vtt = _text_size(draw, vl, font)
    hxy = (ox + g + 5 * u, oy - hth / 2 - htt)
    vxy = (ox - vtw / 2, (vy - vth - vtt - 4 * u) if pr.v_sign < 0 else (vy + 4 * u - vtt))
    pad = 4 * u
    box = (min(ox - 4 * u, vxy[0]) - pad, min(oy, vy, vxy[1] + vtt) - 4 * u - pad,
           hxy[0] + htw + pad, max(oy, vy, vxy[1] + vtt + vth) + 4 * u + pad)
    boxes = _corner_boxes(cv, box)
    i, cost = ink.place(boxes)
    dx, dy = boxes[i][0] - box[0], boxes[i][1] - box[1]
    if cost:
        draw.rectangle(boxes[i], fill=(26, 29, 35), outline=(60, 65, 75), width=max(1, _SS // 2))
    aw = max(1, int(round(1.6 * u)))
    ox, oy, vy = ox + dx, oy + dy, vy + dy
    draw.line([(ox, oy), (ox + g, oy)], fill=TEXT, width=aw)
    draw.line([(ox, oy), (ox, vy)], fill=TEXT, width=aw)
    _arrow_head(draw, (ox + g, oy), (1, 0), 7 * u, TEXT)
    _arrow_head(draw, (ox, vy), (0, vy - oy), 7 * u, TEXT)
    _text(draw, (hxy[0] + dx, hxy[1] + dy), hl, font, TEXT)
    _text(draw, (vxy[0] + dx, vxy[1] + dy), vl, font, TEXT)


def _draw_header(cv: _Canvas, pr: _Projection, step: float):
    """Title bar: the projection's name on the left, the grid step on the right."""
    draw, u, S, header = cv.draw, cv.u, cv.S, cv.header
    draw.rectangle([0, 0, S, header], fill=(28, 31, 37))
    _, th, tt = _text_size(draw, pr.title, cv.font)
    _text(draw, (8 * u, (header - th) / 2 - tt), pr.title, cv.font, TEXT)
    gs = f"grid {step:g}"
    tw, th, tt = _text_size(draw, gs, cv.small)
    _text(draw, (S - tw - 8 * u, (header - th) / 2 - tt), gs, cv.small, TEXT_DIM)


def _panel(path: CameraPath, name: str, size: int, centres: np.ndarray, shapes: np.ndarray,
           first: bool) -> Image.Image:
    """One ``size × size`` panel (drawn at ``_SS × size``, returned at that resolution): the tracks first, then
    the legend (first panel), the axes and the frame labels where they cover no track."""
    pr = _PROJ[name]
    cv = _Canvas.new(size)
    fit = _fit(pr, cv, centres, shapes)
    step = _draw_grid(cv, fit)
    labels = [label for v in range(centres.shape[0]) for label in _draw_view(cv, fit, v)]
    ink = _Ink(cv)
    if first:
        _legend(cv, ink, path)
    _draw_axes(cv, ink, pr)
    _draw_labels(cv, ink, labels)
    _draw_header(cv, pr, step)
    cv.draw.line([(cv.S - 1, 0), (cv.S - 1, cv.S)], fill=(50, 54, 62), width=max(1, _SS // 2))   # separator
    return cv.img


def _legend(cv: _Canvas, ink: _Ink, path: CameraPath):
    """Legend (first panel): a colour swatch per view (up to :data:`LEGEND_ROWS`), then the path's size; in the
    top-right corner of the plot area, or another corner where it covers fewer tracks."""
    draw, S, header, u, font, small = cv.draw, cv.S, cv.header, cv.u, cv.font, cv.small
    V, F = path.views, path.frames
    rows = [f"view {v}" for v in range(min(V, LEGEND_ROWS))]
    more = V - len(rows)
    if more:
        rows[-1] = f"+{more + 1} more (view {LEGEND_ROWS - 1}..{V - 1})"
    info = f"{V} view{'s' * (V != 1)} x {F} frame{'s' * (F != 1)}, {path.width}x{path.height}"
    _, lh, _ = _text_size(draw, "view 0", font)
    row_h = lh + 6 * u
    sw = 12 * u
    widths = [_text_size(draw, r, font)[0] for r in rows] + [_text_size(draw, info, small)[0] - sw - 6 * u]
    bw = sw + 6 * u + max(widths) + 16 * u
    bh = row_h * (len(rows) + 1) + 12 * u
    boxes = _corner_boxes(cv, (S - bw - 8 * u, header + 8 * u, S - 8 * u, header + 8 * u + bh))
    x0, y0, _, _ = boxes[ink.place(boxes)[0]]
    draw.rectangle([x0, y0, x0 + bw, y0 + bh], fill=(26, 29, 35), outline=(60, 65, 75), width=max(1, _SS // 2))
    for i, r in enumerate(rows):
        y = y0 + 8 * u + i * row_h
        colour = PALETTE[i % len(PALETTE)] if not (more and i == len(rows) - 1) else TEXT_DIM
        draw.rectangle([x0 + 8 * u, y + 1 * u, x0 + 8 * u + sw, y + 1 * u + sw], fill=colour)
        _, th, tt = _text_size(draw, r, font)
        _text(draw, (x0 + 8 * u + sw + 6 * u, y + 1 * u + sw / 2 - th / 2 - tt), r, font, TEXT)
    _, th, tt = _text_size(draw, info, small)
    _text(draw, (x0 + 8 * u, y0 + 8 * u + len(rows) * row_h + 2 * u - tt), info, small, TEXT_DIM)


def render_preview(path: CameraPath, size: int = 512, projections: str = "top,front,side") -> torch.Tensor:
    """Orthographic panels of a camera path, side by side.

    Args:
        path: the cameras, ``V`` views × ``F`` frames.
        size: each panel is ``size × size`` pixels (at least 64).
        projections: comma-separated names from :data:`PROJECTIONS`, one panel each, in that order.

    Returns:
        An IMAGE tensor ``(1, size, n · size, 3)``, float32 in ``[0, 1]`` (``n`` panels).
    """
    if not isinstance(path, CameraPath):
        raise TypeError(f"render_preview needs a CameraPath, got {type(path).__name__}")
    names = parse_projections(projections)
    if int(size) != size or size < 64:
        raise ValueError(f"preview size must be an integer of at least 64 pixels, got {size!r}")
    size = int(size)
    centres, shapes, _ = frustum_points(path)
    centres, shapes = centres.cpu().numpy(), shapes.cpu().numpy()
    out = Image.new("RGB", (size * _SS * len(names), size * _SS), BACKGROUND)
    for i, name in enumerate(names):
        out.paste(_panel(path, name, size, centres, shapes, first=(i == 0)), (i * size * _SS, 0))
    out = out.resize((size * len(names), size), Image.Resampling.BOX)
    arr = np.asarray(out, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy())[None]
