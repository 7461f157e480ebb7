// Consistent Video Kit: rotatable 3-D view of a camera path on the "Camera Preview (CVK)" node.
// Small and dependency-free (our own canvas code); nothing is loaded from the network.
// The node's Python side sends {cvk_camera: [{width, height, K, c2w}]} (K (V,F,3,3) pixels, c2w (V,F,4,4),
// OpenCV axes: x right, y down, z forward). This draws what camera/preview.py draws, in 3-D:
// each view's path in its colour, a frustum per frame (brighter toward the last frame), a dot and "0" on
// frame 0, an arrowhead on the last frame; the world axes as a corner gizmo; labels placed off the tracks.
// Drag: rotate (yaw / pitch); wheel: zoom; double-click: reset; the "persp"/"ortho" button switches the
// projection. Before the first run the node shows a faded sample path and a hint of what will appear.
import { app } from "../../scripts/app.js";

const NODE = "CVK_CameraPreview";
const PALETTE = [[66, 165, 245], [255, 112, 67], [102, 187, 106], [255, 202, 40],
  [186, 104, 200], [38, 198, 218], [236, 64, 122], [212, 225, 87]]; // = camera/preview.py PALETTE
const BG = [18, 20, 24];
const FRUSTUM_DEPTH = 0.1; // fraction of the extent of the camera centres, as in camera/preview.py
const MAX_FRUSTUMS = 64;
const MIN_HEIGHT = 260;
const DEFAULT_VIEW = { yaw: -0.6, pitch: 0.45, zoom: 1, ortho: false };

const mix = (c, a) => `rgb(${c.map((x, i) => Math.round(BG[i] + (x - BG[i]) * a)).join(",")})`;

function inv3(m) {
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  const A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (!(Math.abs(det) > 0) || !Number.isFinite(det)) throw new Error("singular K");
  return [[A / det, -(b * i - c * h) / det, (b * f - c * e) / det],
    [B / det, (a * i - c * g) / det, -(a * f - c * d) / det],
    [C / det, -(a * h - b * g) / det, (a * e - b * d) / det]];
}

const mv = (m, v) => m.map((r) => r[0] * v[0] + r[1] * v[1] + r[2] * v[2]);

function frameIndices(F) {
  if (F <= MAX_FRUSTUMS) return [...Array(F).keys()];
  const s = new Set();
  for (let i = 0; i < MAX_FRUSTUMS; i++) s.add(Math.round((i * (F - 1)) / (MAX_FRUSTUMS - 1)));
  return [...s].sort((a, b) => a - b);
}

// World points of the drawing: per view, camera centres and per frame 7 points (image corners TL, TR, BR,
// BL, then the "up" triangle on the top edge), as camera/preview.py frustum_points.
function buildScene(data) {
  const { width: W, height: H, K, c2w } = data;
  if (!Array.isArray(K) || !Array.isArray(c2w) || !K.length || K.length !== c2w.length) {
    throw new Error("camera data without K / c2w");
  }
  const centres = c2w.map((view) => view.map((m) => [m[0][3], m[1][3], m[2][3]]));
  const flat = centres.flat();
  if (!flat.length || flat.some((p) => p.some((x) => !Number.isFinite(x)))) throw new Error("non-finite camera");
  const lo = [0, 1, 2].map((k) => Math.min(...flat.map((p) => p[k])));
  const hi = [0, 1, 2].map((k) => Math.max(...flat.map((p) => p[k])));
  let extent = Math.max(...[0, 1, 2].map((k) => hi[k] - lo[k]));
  const mag = Math.max(...flat.map((p) => Math.max(...p.map(Math.abs)))) + 1;
  if (!(extent > 1e-9 * mag)) extent = 1; // all cameras at one place
  const depth = FRUSTUM_DEPTH * extent;
  const pix = [[0, 0], [W, 0], [W, H], [0, H], [0.3 * W, 0], [0.5 * W, -0.25 * H], [0.7 * W, 0]];
  const shapes = c2w.map((view, v) => view.map((m, f) => {
    const Ki = inv3(K[v][f]);
    return pix.map(([u, w]) => {
      const r = mv(Ki, [u, w, 1]);
      const z = Math.abs(r[2]) > 1e-12 ? r[2] : 1;
      const p = r.map((x) => (x / z) * depth);
      return [0, 1, 2].map((k) => m[k][0] * p[0] + m[k][1] * p[1] + m[k][2] * p[2] + m[k][3]);
    });
  }));
  const all = [...flat, ...shapes.flat(2)];
  const blo = [0, 1, 2].map((k) => Math.min(...all.map((p) => p[k])));
  const bhi = [0, 1, 2].map((k) => Math.max(...all.map((p) => p[k])));
  const centre = blo.map((x, k) => (x + bhi[k]) / 2);
  let radius = Math.hypot(...bhi.map((x, k) => x - blo[k])) / 2;
  if (!(radius > 1e-12 * mag)) radius = 1;
  const nearOrigin = Math.hypot(...centre) <= 2 * radius; // the origin cross is drawn only then
  return { W, H, centres, shapes, centre, radius, nearOrigin, views: c2w.length, frames: c2w[0].length };
}

// world (OpenCV) → screen [x, y, depth toward the viewer]; yaw about the up axis (−y), then pitch.
function rotation(view) {
  const cy = Math.cos(view.yaw), sy = Math.sin(view.yaw), cp = Math.cos(view.pitch), sp = Math.sin(view.pitch);
  // y-up, viewer on +z: (x, −y, −z) of a direction (a rotation, so handedness is kept)
  return (d) => {
    const x = d[0], y = -d[1], z = -d[2];
    const x1 = cy * x + sy * z, z1 = -sy * x + cy * z;
    return [x1, cp * y - sp * z1, sp * y + cp * z1];
  };
}

function projector(scene, view, w, h) {
  const R = scene.radius, D = 3 * R;
  const fit = (0.42 * Math.min(w, h) * view.zoom) / R;
  const rot = rotation(view);
  return (p) => {
    const [x1, y2, z2] = rot([0, 1, 2].map((k) => p[k] - scene.centre[k]));
    const s = view.ortho ? fit : (fit * D) / Math.max(D - z2, 0.05 * D);
    return [w / 2 + x1 * s, h / 2 - y2 * s, z2];
  };
}

function arrowHead(ctx, tip, from, size) {
  const dx = tip[0] - from[0], dy = tip[1] - from[1], n = Math.hypot(dx, dy);
  if (!(n > 1e-6)) return;
  const ux = dx / n, uy = dy / n, bx = tip[0] - ux * size, by = tip[1] - uy * size;
  ctx.beginPath();
  ctx.moveTo(tip[0], tip[1]);
  ctx.lineTo(bx - uy * size * 0.5, by + ux * size * 0.5);
  ctx.lineTo(bx + uy * size * 0.5, by - ux * size * 0.5);
  ctx.closePath();
  ctx.fill();
}

function polyline(ctx, pts, close = false) {
  ctx.beginPath();
  pts.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
  if (close) ctx.closePath();
  ctx.stroke();
}

// ---- where labels may go: the drawn tracks (segments) and boxes already taken -----------------------------
// A label goes to the first spot around its point that meets no track and no taken box (the usual spot
// first), else to the one that meets the fewest; the same as the IMAGE panels do in camera/preview.py.
const LABEL_SPOTS = [1, 2.5, 4, 5.5].flatMap((k) =>
  [[1, -1], [1, 1], [-1, -1], [-1, 1], [0, -1], [0, 1], [1, 0], [-1, 0]].map(([dx, dy]) => [dx, dy, k]));
const LABEL_H = 12;

// does segment a→b, widened by pad, meet box [x, y, w, h]? (Liang–Barsky clipping)
function segmentMeetsBox(a, b, box, pad) {
  const x0 = box[0] - pad, y0 = box[1] - pad, x1 = box[0] + box[2] + pad, y1 = box[1] + box[3] + pad;
  const dx = b[0] - a[0], dy = b[1] - a[1];
  let t0 = 0, t1 = 1;
  for (const [p, q] of [[-dx, a[0] - x0], [dx, x1 - a[0]], [-dy, a[1] - y0], [dy, y1 - a[1]]]) {
    if (p === 0) {
      if (q < 0) return false;
    } else {
      const r = q / p;
      if (p < 0) t0 = Math.max(t0, r);
      else t1 = Math.min(t1, r);
      if (t0 > t1) return false;
    }
  }
  return true;
}

const boxesMeet = (a, b) => a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];

class Taken {
  constructor(w, h) {
    this.w = w;
    this.h = h;
    this.segments = []; // [a, b, half width]
    this.boxes = [];
  }
  line(pts, width, close = false) {
    const n = pts.length;
    for (let i = 1; i < n + (close ? 1 : 0); i++) this.segments.push([pts[i - 1], pts[i % n], width / 2]);
  }
  // the label boxes around `point` in order of preference; the chosen one is taken
  place(point, tw, first) {
    const gap = 7;
    const spots = [LABEL_SPOTS[first], ...LABEL_SPOTS.filter((_, i) => i !== first)];
    const reach = gap * 5.5 + tw + LABEL_H;
    const near = this.segments.filter(([a, b, hw]) =>
      Math.min(a[0], b[0]) - hw < point[0] + reach && Math.max(a[0], b[0]) + hw > point[0] - reach &&
      Math.min(a[1], b[1]) - hw < point[1] + reach && Math.max(a[1], b[1]) + hw > point[1] - reach);
    let best = null;
    for (const [dx, dy, k] of spots) {
      const x = point[0] + dx * gap * k - (dx > 0 ? 0 : dx < 0 ? tw : tw / 2);
      const y = point[1] + dy * gap * k - (dy > 0 ? 0 : dy < 0 ? LABEL_H : LABEL_H / 2);
      const box = [x, y, tw, LABEL_H];
      if (x < 0 || y < 0 || x + tw > this.w || y + LABEL_H > this.h) continue;
      const cost = near.filter(([a, b, hw]) => segmentMeetsBox(a, b, box, hw)).length +
        100 * this.boxes.filter((o) => boxesMeet(o, box)).length;
      if (!best || cost < best.cost) best = { box, cost };
      if (cost === 0) break;
    }
    if (best) this.boxes.push(best.box);
    return best?.box;
  }
}

// text with a background-coloured outline, legible where it crosses a line
function haloText(ctx, text, x, y, fill) {
  ctx.lineWidth = 3;
  ctx.strokeStyle = `rgb(${BG.join(",")})`;
  ctx.strokeText?.(text, x, y);
  ctx.fillStyle = fill;
  ctx.fillText(text, x, y);
}

const BUTTON = { w: 46, h: 18, pad: 8 };
const buttonRect = (w) => [w - BUTTON.w - BUTTON.pad, BUTTON.pad, BUTTON.w, BUTTON.h];
const GIZMO = { r: 24 };
const gizmoBox = (h) => [4, h - 24 - 2 * GIZMO.r - 36, 2 * GIZMO.r + 44, 2 * GIZMO.r + 36]; // above the controls line

// Each view's frustums, path, last-frame arrowhead and frame-0 dot; the segments go into `taken` and the frame
// labels (drawn afterwards, where they meet no track) into the returned list.
function drawTracks(ctx, scene, P, taken) {
  const V = scene.views, F = scene.frames;
  const frames = frameIndices(F);
  const ramp = (f) => (F === 1 ? 1 : f / (F - 1));
  const labels = [];
  for (let v = 0; v < V; v++) {
    const colour = PALETTE[v % PALETTE.length];
    const pc = scene.centres[v].map(P);
    ctx.lineWidth = 1;
    for (const f of frames) {
      const c = scene.shapes[v][f].map(P);
      ctx.strokeStyle = mix(colour, 0.4 + 0.6 * ramp(f));
      for (let k = 0; k < 4; k++) polyline(ctx, [pc[f], c[k]]);
      polyline(ctx, c.slice(0, 4), true);
      polyline(ctx, c.slice(4, 7));
      for (let k = 0; k < 4; k++) taken?.line([pc[f], c[k]], 1);
      taken?.line(c.slice(0, 4), 1, true);
      taken?.line(c.slice(4, 7), 1);
    }
    ctx.lineWidth = 2.5;
    for (let f = 1; f < F; f++) {
      ctx.strokeStyle = mix(colour, 0.5 + 0.5 * ramp(f));
      polyline(ctx, [pc[f - 1], pc[f]]);
    }
    taken?.line(pc, 2.5);
    ctx.fillStyle = mix(colour, 1);
    if (F > 1) {
      const last = pc[F - 1];
      for (let f = F - 2; f >= 0; f--) {
        if (Math.hypot(last[0] - pc[f][0], last[1] - pc[f][1]) > 6) {
          arrowHead(ctx, last, pc[f], 11);
          taken?.line([last, pc[f]], 11);
          break;
        }
      }
      labels.push({ point: last, text: String(F - 1), fill: mix(colour, 1), spot: 1 });
    }
    ctx.beginPath();
    ctx.arc(pc[0][0], pc[0][1], 4.5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.lineWidth = 1;
    ctx.strokeStyle = "#e1e4eb";
    ctx.stroke();
    taken?.line([pc[0], pc[0]], 11);
    labels.push({ point: pc[0], text: "0", fill: "#e1e4eb", spot: 0 });
  }
  return labels;
}

// one label per text and spot (CVD's views all start at one camera), each where it meets no track
function drawLabels(ctx, labels, taken) {
  const done = [];
  for (const { point, text, fill, spot } of labels) {
    if (done.some((d) => d.text === text && Math.hypot(d.point[0] - point[0], d.point[1] - point[1]) < 6)) continue;
    done.push({ point, text });
    const box = taken.place(point, ctx.measureText(text).width, spot);
    if (box) haloText(ctx, text, box[0], box[1] + LABEL_H / 2, fill);
  }
}

// a faint unlabelled cross at the world origin (under the tracks) when it is near the cameras
function drawOrigin(ctx, scene, P) {
  if (!scene.nearOrigin) return;
  const L = 0.35 * scene.radius, o = P([0, 0, 0]);
  ctx.lineWidth = 1;
  ctx.strokeStyle = "#3c414c";
  for (let k = 0; k < 3; k++) {
    const e = [0, 0, 0];
    e[k] = L;
    polyline(ctx, [o, P(e)]);
  }
}

// the world axes' directions as a small gizmo in the bottom-left corner, turning with the view: their labels
// never sit on a track
function drawGizmo(ctx, view, h) {
  const [bx, by, bw, bh] = gizmoBox(h);
  ctx.fillStyle = "rgba(26,29,35,0.85)";
  ctx.fillRect(bx, by, bw, bh);
  const c = [bx + bw / 2, by + bh / 2];
  const rot = rotation(view);
  const axes = ["x", "y", "z"].map((name, k) => {
    const d = [0, 0, 0];
    d[k] = 1;
    const [x, y, z] = rot(d);
    return { name, x, y, z };
  }).sort((a, b) => a.z - b.z); // back to front
  ctx.lineWidth = 1.5;
  for (const { name, x, y } of axes) {
    const tip = [c[0] + x * GIZMO.r, c[1] - y * GIZMO.r];
    ctx.strokeStyle = ctx.fillStyle = "#9aa0ad";
    polyline(ctx, [c, tip]);
    arrowHead(ctx, tip, c, 6);
    const n = Math.hypot(x, y) || 1;
    ctx.textAlign = "center";
    ctx.fillStyle = "#e1e4eb";
    ctx.fillText(`+${name}`, tip[0] + (x / n) * 9, tip[1] - (y / n) * 9);
    ctx.textAlign = "left";
  }
}

// legend (a swatch per view), the path's size, the projection button and the controls, on dark boxes
function drawOverlay(ctx, scene, state, w, h, taken) {
  const V = scene.views, F = scene.frames;
  const rows = Math.min(V, 12);
  const info = `${V} view${V === 1 ? "" : "s"} × ${F} frame${F === 1 ? "" : "s"}, ${scene.W}×${scene.H}`;
  const lw = Math.max(ctx.measureText(info).width, ...[...Array(rows).keys()].map((i) =>
    ctx.measureText(V > 12 && i === rows - 1 ? `+${V - 11} more (view 11..${V - 1})` : `view ${i}`).width + 16));
  ctx.fillStyle = "rgba(26,29,35,0.85)";
  ctx.fillRect(4, 4, lw + 12, rows * 16 + 24);
  taken.boxes.push([4, 4, lw + 12, rows * 16 + 24]);
  for (let i = 0; i < rows; i++) {
    const more = V > 12 && i === rows - 1;
    ctx.fillStyle = more ? "#8c929e" : mix(PALETTE[i % PALETTE.length], 1);
    ctx.fillRect(8, 10 + i * 16, 10, 10);
    ctx.fillStyle = "#e1e4eb";
    ctx.fillText(more ? `+${V - 11} more (view 11..${V - 1})` : `view ${i}`, 24, 15 + i * 16);
  }
  ctx.fillStyle = "#8c929e";
  ctx.fillText(info, 8, 15 + rows * 16 + 2);
  if (state.interactive) {
    const [bx, by, bw, bh] = buttonRect(w);
    taken.boxes.push([bx, by, bw, bh]);
    ctx.fillStyle = "#262a31";
    ctx.fillRect(bx, by, bw, bh);
    ctx.strokeStyle = "#4a505c";
    ctx.strokeRect(bx + 0.5, by + 0.5, bw - 1, bh - 1);
    ctx.fillStyle = "#e1e4eb";
    ctx.textAlign = "center";
    ctx.fillText(state.view.ortho ? "ortho" : "persp", bx + bw / 2, by + bh / 2);
    ctx.textAlign = "left";
    const help = "drag: rotate · wheel: zoom · double-click: reset";
    taken.boxes.push([4, h - 18, ctx.measureText(help).width + 8, 16]);
    haloText(ctx, help, 8, h - 10, "#6c7280");
  }
}

// Before the first run: a faded sample path and what the node will show.
let SAMPLE = null;
function sampleScene() {
  if (SAMPLE) return SAMPLE;
  const K = [[223.578, 0, 128], [0, 223.578, 128], [0, 0, 1]];
  const c2w = [1, 0, -1].map((side) => [...Array(8).keys()].map((f) => { // three views leaving one camera
    const a = side * 0.08 * f, c = Math.cos(a), s = Math.sin(a);
    return [[c, 0, s, side * 0.06 * f], [0, 1, 0, (side ? 0.01 : -0.06) * f], [-s, 0, c, 0.02 * f], [0, 0, 0, 1]];
  }));
  SAMPLE = buildScene({ width: 256, height: 256, K: c2w.map((v) => v.map(() => K)), c2w });
  return SAMPLE;
}

const HINT = ["Camera Preview", "Run the workflow to see the camera path here in 3-D:",
  "one colour per view, a frustum per frame,", "a dot on frame 0, an arrowhead on the last frame.",
  "Drag to rotate, wheel to zoom, double-click to reset."];

function drawHint(ctx, w, h, error) {
  if (error) {
    ctx.fillStyle = "#e0a0a0";
    ctx.fillText(`cannot draw the camera path: ${error}`, 10, h / 2);
    return;
  }
  const bh = HINT.length * 20 + 16;
  const sh = Math.max(40, h - bh - 24); // the sample above, the words below
  ctx.globalAlpha = 0.45;
  const sample = sampleScene();
  drawTracks(ctx, sample, projector(sample, { ...DEFAULT_VIEW, zoom: 1.1 }, w, sh), null);
  ctx.globalAlpha = 1;
  ctx.fillStyle = "#8c929e";
  ctx.fillText("a sample path, not yours yet", 8, 14);
  ctx.font = "13px sans-serif";
  const bw = Math.min(w - 16, Math.max(...HINT.map((t) => ctx.measureText(t).width)) + 28);
  const x = (w - bw) / 2, y = Math.max(8, Math.min(sh, h - bh - 8));
  ctx.fillStyle = "rgba(26,29,35,0.9)";
  ctx.fillRect(x, y, bw, bh);
  ctx.strokeStyle = "#4a505c";
  ctx.lineWidth = 1;
  ctx.strokeRect(x + 0.5, y + 0.5, bw - 1, bh - 1);
  ctx.textAlign = "center";
  HINT.forEach((t, i) => {
    ctx.font = i === 0 ? "bold 15px sans-serif" : "13px sans-serif";
    ctx.fillStyle = i === 0 ? "#e1e4eb" : "#aab0bc";
    ctx.fillText(t, w / 2, y + 18 + i * 20);
  });
  ctx.textAlign = "left";
}

// Draws the scene into ctx's [0, w] × [0, h] (CSS pixels).
function drawScene(ctx, w, h, state) {
  ctx.save();
  ctx.fillStyle = `rgb(${BG.join(",")})`;
  ctx.fillRect(0, 0, w, h);
  ctx.lineJoin = "round";
  ctx.lineCap = "round";
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  const { scene, error } = state;
  if (scene) {
    const P = projector(scene, state.view, w, h);
    const taken = new Taken(w, h);
    drawOrigin(ctx, scene, P);
    const labels = drawTracks(ctx, scene, P, taken);
    drawGizmo(ctx, state.view, h);
    taken.boxes.push(gizmoBox(h));
    drawOverlay(ctx, scene, state, w, h, taken);
    drawLabels(ctx, labels, taken);
  } else {
    drawHint(ctx, w, h, error);
  }
  ctx.restore();
  window.__CVK_CAMERA_PREVIEW_DRAWN__ = (window.__CVK_CAMERA_PREVIEW_DRAWN__ || 0) + 1;
}

function setData(state, data) {
  try {
    state.scene = buildScene(data);
    state.error = null;
  } catch (e) {
    state.scene = null;
    state.error = e?.message ?? String(e);
  }
}

// ---- DOM widget: a <canvas> on the node --------------------------------------------------------------
function attachCanvas(node) {
  const canvas = document.createElement("canvas");
  canvas.style.width = "100%";
  canvas.style.height = "100%";
  canvas.style.display = "block";
  canvas.style.cursor = "grab";
  canvas.style.touchAction = "none";
  const state = { scene: null, error: null, view: { ...DEFAULT_VIEW }, interactive: true, canvas, frame: 0 };

  const redraw = () => {
    if (state.frame) return;
    state.frame = requestAnimationFrame(() => {
      state.frame = 0;
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(1, canvas.clientWidth || node.size[0] - 20);
      const h = Math.max(1, canvas.clientHeight || MIN_HEIGHT);
      const pw = Math.round(w * dpr), ph = Math.round(h * dpr);
      if (canvas.width !== pw || canvas.height !== ph) {
        canvas.width = pw;
        canvas.height = ph;
      }
      const ctx = canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      drawScene(ctx, w, h, state);
    });
  };
  state.redraw = redraw;

  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    e.stopPropagation();
    e.preventDefault();
    drag = { x: e.clientX, y: e.clientY, moved: false, yaw: state.view.yaw, pitch: state.view.pitch };
    canvas.setPointerCapture?.(e.pointerId);
    canvas.style.cursor = "grabbing";
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    e.stopPropagation();
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.hypot(dx, dy) > 3) drag.moved = true;
    state.view.yaw = drag.yaw + dx * 0.01;
    state.view.pitch = Math.max(-Math.PI / 2, Math.min(Math.PI / 2, drag.pitch + dy * 0.01));
    redraw();
  });
  const endDrag = (e) => {
    if (!drag) return;
    e.stopPropagation();
    canvas.releasePointerCapture?.(e.pointerId);
    canvas.style.cursor = "grab";
    if (!drag.moved && e.type === "pointerup") {
      const r = canvas.getBoundingClientRect();
      const sx = r.width ? canvas.clientWidth / r.width : 1; // canvas may be CSS-scaled with the graph zoom
      const x = (e.clientX - r.left) * sx, y = (e.clientY - r.top) * sx;
      const [bx, by, bw, bh] = buttonRect(canvas.clientWidth);
      if (x >= bx && x <= bx + bw && y >= by && y <= by + bh) {
        state.view.ortho = !state.view.ortho;
        redraw();
      }
    }
    drag = null;
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    e.stopPropagation();
    state.view.zoom = Math.max(0.1, Math.min(20, state.view.zoom * Math.exp(-e.deltaY * 0.0015)));
    redraw();
  }, { passive: false });
  canvas.addEventListener("dblclick", (e) => {
    e.preventDefault();
    e.stopPropagation();
    state.view = { ...DEFAULT_VIEW };
    redraw();
  });
  canvas.addEventListener("contextmenu", (e) => e.stopPropagation());

  const widget = node.addDOMWidget("camera3d", "canvas", canvas, {
    serialize: false,
    getMinHeight: () => MIN_HEIGHT,
  });
  if (widget) widget.serialize = false;
  if (typeof ResizeObserver !== "undefined") {
    state.observer = new ResizeObserver(() => redraw());
    state.observer.observe(canvas);
  }
  return state;
}

// ---- fallback without addDOMWidget: drawn in onDrawForeground, drag to rotate -------------------------
function fallbackArea(node) {
  const LG = globalThis.LiteGraph ?? {};
  const ws = node.widgets ?? [];
  let top = 6;
  for (const w of ws) {
    if (w.name === "camera3d") continue;
    const y = (w.last_y ?? 0) + (w.computeSize?.(node.size[0])?.[1] ?? LG.NODE_WIDGET_HEIGHT ?? 20);
    top = Math.max(top, y + 6);
  }
  return [6, top, node.size[0] - 12, node.size[1] - top - 6];
}

function ensureHeight(node) {
  const [, top] = fallbackArea(node);
  const need = top + MIN_HEIGHT + 6;
  if (node.size[1] < need) node.setSize?.([Math.max(node.size[0], 320), need]);
  node.setDirtyCanvas?.(true, true);
}

// the node's drawing area (made once: at creation, where it shows the hint, or at the first run)
function cameraView(node) {
  if (!node.__cvkCamera) {
    if (typeof node.addDOMWidget === "function") {
      node.__cvkCamera = attachCanvas(node);
      const sz = node.computeSize?.();
      if (sz) node.setSize?.([Math.max(node.size[0], sz[0], 320), Math.max(node.size[1], sz[1])]);
    } else {
      node.__cvkCamera = { scene: null, error: null, view: { ...DEFAULT_VIEW }, interactive: false, fallback: true };
    }
  }
  return node.__cvkCamera;
}

function refresh(node) {
  const state = node.__cvkCamera;
  if (state.fallback) ensureHeight(node);
  else state.redraw();
}

function showCamera(node, data) {
  setData(cameraView(node), data);
  refresh(node);
}

app.registerExtension({
  name: "ConsistentVideoKit.cameraPreview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;
    const proto = nodeType.prototype;

    // before the first run: the drawing area with a hint of what will appear (not an empty box)
    const onNodeCreated = proto.onNodeCreated;
    proto.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      cameraView(this);
      refresh(this);
      return r;
    };

    const onExecuted = proto.onExecuted;
    proto.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const cam = message?.cvk_camera;
      const data = Array.isArray(cam) ? cam[0] : cam;
      if (data) showCamera(this, data);
      return r;
    };

    const onResize = proto.onResize;
    proto.onResize = function () {
      const r = onResize?.apply(this, arguments);
      this.__cvkCamera?.redraw?.();
      return r;
    };

    const onRemoved = proto.onRemoved;
    proto.onRemoved = function () {
      const r = onRemoved?.apply(this, arguments);
      this.__cvkCamera?.observer?.disconnect();
      return r;
    };

    const onDrawForeground = proto.onDrawForeground;
    proto.onDrawForeground = function (ctx) {
      const r = onDrawForeground?.apply(this, arguments);
      const state = this.__cvkCamera;
      if (state?.fallback && !this.flags?.collapsed) {
        const [x, y, w, h] = fallbackArea(this);
        if (w > 20 && h > 20) {
          ctx.save();
          ctx.beginPath();
          ctx.rect(x, y, w, h);
          ctx.clip();
          ctx.translate(x, y);
          drawScene(ctx, w, h, state);
          ctx.restore();
        }
      }
      return r;
    };

    // fallback interaction: drag on the drawing rotates, double-click resets
    const onMouseDown = proto.onMouseDown;
    proto.onMouseDown = function (e, pos) {
      const state = this.__cvkCamera;
      if (state?.fallback && state.scene && pos) {
        const [x, y, w, h] = fallbackArea(this);
        if (pos[0] >= x && pos[0] <= x + w && pos[1] >= y && pos[1] <= y + h) {
          state.drag = { x: pos[0], y: pos[1], yaw: state.view.yaw, pitch: state.view.pitch };
          return true;
        }
      }
      return onMouseDown?.apply(this, arguments);
    };
    const onMouseMove = proto.onMouseMove;
    proto.onMouseMove = function (e, pos) {
      const state = this.__cvkCamera;
      if (state?.fallback && state.drag && pos) {
        if (e && e.buttons === 0) {
          state.drag = null;
        } else {
          state.view.yaw = state.drag.yaw + (pos[0] - state.drag.x) * 0.01;
          state.view.pitch = Math.max(-Math.PI / 2, Math.min(Math.PI / 2, state.drag.pitch + (pos[1] - state.drag.y) * 0.01));
          this.setDirtyCanvas?.(true, false);
          return true;
        }
      }
      return onMouseMove?.apply(this, arguments);
    };
    const onMouseUp = proto.onMouseUp;
    proto.onMouseUp = function () {
      if (this.__cvkCamera?.drag) this.__cvkCamera.drag = null;
      return onMouseUp?.apply(this, arguments);
    };
    const onDblClick = proto.onDblClick;
    proto.onDblClick = function (e, pos) {
      const state = this.__cvkCamera;
      if (state?.fallback && state.scene) {
        state.view = { ...DEFAULT_VIEW };
        this.setDirtyCanvas?.(true, false);
        return true;
      }
      return onDblClick?.apply(this, arguments);
    };
  },
});
