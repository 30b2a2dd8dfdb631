/**
 * The /learn/line lesson's drawing (learn-line.js says how its files fit together): one render
 * per animation frame of the plot (points, the descent's line, the exact line), the loss surface
 * (with the descent's path) and the loss curve, on canvases; and the numbers and the words
 * beside them (a, b, the loss, the valley's shape, what happened).
 */
import { count } from './format.js';
import { meanStd, niceTicks, valleyShape, formatValue } from './line-fit.js';
import {
  $, CLOSE_ENOUGH, COLOURS, MAX_DRAWN, OPTIMIZER_NAMES, engine, fit, points, pointsVersion, settings,
  surface, view,
} from './learn-line-state.js';
import { computeSurface } from './learn-line-descent.js';
import { currentExact, exactInfo } from './learn-line-server.js';
import { drag } from './learn-line-input.js';

// ---------------------------------------------------------------- drawing

export let renderQueued = false;
export function requestRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

export function render() {
  if (surface.stale) computeSurface();
  drawPlot();
  drawSurface();
  drawCurve();
  showText();
}

/** The readouts and the words: at once (the canvases wait for the next frame). */
export function showText() {
  showNumbers();
  showValley();
  $('what-happened').textContent = whatHappened();
}

/** A chart area on a canvas: its pixel box and its window onto the numbers, with conversions. */
export function chartArea(canvas, margin, window) {
  const left = margin.left;
  const top = margin.top;
  const width = canvas.width - margin.left - margin.right;
  const height = canvas.height - margin.top - margin.bottom;
  return {
    left, top, width, height, ...window,
    px: (x) => left + ((x - window.xMin) / (window.xMax - window.xMin)) * width,
    py: (y) => top + ((window.yMax - y) / (window.yMax - window.yMin)) * height,
    x: (px) => window.xMin + ((px - left) / width) * (window.xMax - window.xMin),
    y: (py) => window.yMax - ((py - top) / height) * (window.yMax - window.yMin),
  };
}

export const tickText = (v) => formatValue(v, 3);

/** Grid lines, ticks and axis names around `area`. */
export function drawAxes(ctx, area, xName, yName, { yTicks = niceTicks(area.yMin, area.yMax, 5), yText = tickText } = {}) {
  ctx.save();
  ctx.font = '12px system-ui, sans-serif';
  ctx.strokeStyle = COLOURS.grid;
  ctx.fillStyle = COLOURS.axis;
  ctx.lineWidth = 1;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const t of niceTicks(area.xMin, area.xMax, 6)) {
    const x = Math.round(area.px(t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, area.top);
    ctx.lineTo(x, area.top + area.height);
    ctx.stroke();
    ctx.fillText(tickText(t), x, area.top + area.height + 4);
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const t of yTicks) {
    const y = Math.round(area.py(t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(area.left, y);
    ctx.lineTo(area.left + area.width, y);
    ctx.stroke();
    ctx.fillText(yText(t), area.left - 5, y);
  }
  ctx.strokeStyle = COLOURS.axis;
  ctx.strokeRect(area.left + 0.5, area.top + 0.5, area.width, area.height);
  ctx.fillStyle = COLOURS.text;
  ctx.font = 'italic 13px system-ui, sans-serif';
  ctx.textAlign = 'center';
  ctx.textBaseline = 'bottom';
  ctx.fillText(xName, area.left + area.width / 2, ctx.canvas.height - 2);
  ctx.save();
  ctx.translate(12, area.top + area.height / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = 'middle';
  ctx.fillText(yName, 0, 0);
  ctx.restore();
  ctx.restore();
}

export function clip(ctx, area) {
  ctx.beginPath();
  ctx.rect(area.left, area.top, area.width, area.height);
  ctx.clip();
}

export const PLOT_MARGIN = { left: 56, right: 14, top: 14, bottom: 40 };

export function plotArea() {
  return chartArea($('plot'), PLOT_MARGIN, view);
}

/** y = a x + b across `area` (nothing when a or b is not a number). */
export function drawLine(ctx, area, a, b, colour, dashed) {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return;
  ctx.save();
  clip(ctx, area);
  ctx.strokeStyle = colour;
  ctx.lineWidth = dashed ? 2 : 3;
  ctx.setLineDash(dashed ? [7, 5] : []);
  ctx.beginPath();
  ctx.moveTo(area.px(area.xMin), area.py(a * area.xMin + b));
  ctx.lineTo(area.px(area.xMax), area.py(a * area.xMax + b));
  ctx.stroke();
  ctx.restore();
}

export function drawPlot() {
  const canvas = $('plot');
  const ctx = canvas.getContext('2d');
  const area = plotArea();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  drawAxes(ctx, area, 'x', 'y');
  const best = currentExact();
  if (best) drawLine(ctx, area, best.a, best.b, COLOURS.exact, true);
  ctx.save();
  clip(ctx, area);
  if ($('show-errors').checked && Number.isFinite(fit.a) && Number.isFinite(fit.b)) {
    ctx.strokeStyle = COLOURS.error;
    ctx.lineWidth = 1.5;
    points.x.forEach((x, i) => { // each point's error: the loss is the mean of their squares
      ctx.beginPath();
      ctx.moveTo(area.px(x), area.py(points.y[i]));
      ctx.lineTo(area.px(x), area.py(fit.a * x + fit.b));
      ctx.stroke();
    });
  }
  ctx.restore();
  drawLine(ctx, area, fit.a, fit.b, COLOURS.descent, false);
  ctx.save();
  clip(ctx, area);
  ctx.fillStyle = COLOURS.point;
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = 1.5;
  points.x.forEach((x, i) => {
    ctx.beginPath();
    ctx.arc(area.px(x), area.py(points.y[i]), i === drag.index ? 7 : 5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  });
  ctx.restore();
  // legend
  ctx.save();
  ctx.font = '13px system-ui, sans-serif';
  ctx.textBaseline = 'top';
  ctx.textAlign = 'left';
  const legend = [[COLOURS.descent, `descent: y = ${lineText(fit.a, fit.b)}`]];
  if (best) legend.push([COLOURS.exact, `exact: y = ${lineText(best.a, best.b)}`]);
  legend.forEach(([colour, text], i) => {
    const y = area.top + 8 + i * 18;
    ctx.fillStyle = 'rgba(255, 255, 255, 0.85)';
    ctx.fillRect(area.left + 6, y - 2, ctx.measureText(text).width + 30, 18);
    ctx.fillStyle = colour;
    ctx.fillRect(area.left + 10, y + 6, 16, 3);
    ctx.fillText(text, area.left + 32, y);
  });
  if (!points.x.length) {
    ctx.fillStyle = COLOURS.axis;
    ctx.textAlign = 'center';
    ctx.fillText('Click to add points', area.left + area.width / 2, area.top + area.height / 2);
  }
  ctx.restore();
}

export function lineText(a, b) {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return 'no line (the numbers overflowed)';
  return `${formatValue(a)} x ${b < 0 ? '−' : '+'} ${formatValue(Math.abs(b))}`;
}

export const SURFACE_MARGIN = { left: 50, right: 10, top: 10, bottom: 40 };

export function surfaceArea() {
  const { aMin, aMax, bMin, bMax } = surface.window;
  return chartArea($('surface'), SURFACE_MARGIN, { xMin: aMin, xMax: aMax, yMin: bMin, yMax: bMax });
}

/** Every k-th of `items`, at most MAX_DRAWN of them, the last one always. */
export function thin(items) {
  if (items.length <= MAX_DRAWN) return items.map((item, i) => [item, i]);
  const stride = Math.ceil(items.length / MAX_DRAWN);
  const kept = [];
  for (let i = 0; i < items.length; i += stride) kept.push([items[i], i]);
  if (kept[kept.length - 1][1] !== items.length - 1) kept.push([items[items.length - 1], items.length - 1]);
  return kept;
}

export function drawSurface() {
  const canvas = $('surface');
  const ctx = canvas.getContext('2d');
  const area = surfaceArea();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (surface.image) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(surface.image, area.left, area.top, area.width, area.height);
  } else {
    ctx.fillStyle = COLOURS.axis;
    ctx.font = '13px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.fillText(engine.ready ? 'Add points to see their loss surface' : 'Starting TF.js…',
      area.left + area.width / 2, area.top + area.height / 2);
  }
  drawAxes(ctx, area, 'a (slope)', 'b (intercept)');
  ctx.save();
  clip(ctx, area);
  const best = currentExact();
  if (best) { // the exact answer: the bottom of the valley
    ctx.strokeStyle = COLOURS.exact;
    ctx.lineWidth = 2.5;
    const x = area.px(best.a);
    const y = area.py(best.b);
    ctx.beginPath();
    ctx.moveTo(x - 7, y - 7);
    ctx.lineTo(x + 7, y + 7);
    ctx.moveTo(x + 7, y - 7);
    ctx.lineTo(x - 7, y + 7);
    ctx.stroke();
  }
  const path = thin(fit.path).filter(([[a, b]]) => Number.isFinite(a) && Number.isFinite(b));
  if (path.length) {
    ctx.strokeStyle = COLOURS.descent;
    ctx.lineWidth = 2;
    ctx.beginPath();
    path.forEach(([[a, b]], i) => {
      const x = Math.max(-1e4, Math.min(1e4, area.px(a))); // far-off points of an exploding path
      const y = Math.max(-1e4, Math.min(1e4, area.py(b)));
      if (i) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
    });
    ctx.stroke();
    const dot = (a, b, radius, fill) => {
      ctx.beginPath();
      ctx.arc(area.px(a), area.py(b), radius, 0, 2 * Math.PI);
      ctx.fillStyle = fill;
      ctx.fill();
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 1.5;
      ctx.stroke();
    };
    dot(path[0][0][0], path[0][0][1], 4.5, COLOURS.start);
    const [[a, b]] = path[path.length - 1];
    dot(a, b, 6, COLOURS.descent);
  }
  ctx.restore();
}

export const CURVE_MARGIN = { left: 56, right: 18, top: 10, bottom: 40 };

export function drawCurve() {
  const canvas = $('curve');
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const best = currentExact();
  const finite = fit.losses.filter((v) => Number.isFinite(v) && v > 0);
  const logs = finite.map(Math.log10);
  if (best && best.loss > 0) logs.push(Math.log10(best.loss));
  let lo = logs.length ? Math.min(...logs) : -1;
  let hi = logs.length ? Math.max(...logs) : 1;
  if (hi - lo < 0.5) {
    lo -= 0.25;
    hi += 0.25;
  }
  lo = Math.floor(lo * 2) / 2;
  hi = Math.ceil(hi * 2) / 2;
  const area = chartArea(canvas, CURVE_MARGIN, { xMin: 0, xMax: Math.max(10, fit.losses.length - 1), yMin: lo, yMax: hi });
  // the y axis in powers of ten: ticks at whole exponents (or halves when the range is small)
  const every = hi - lo <= 3 ? 0.5 : Math.ceil((hi - lo) / 5);
  const yTicks = [];
  for (let t = Math.ceil(lo / every) * every; t <= hi + 1e-9; t += every) yTicks.push(t);
  drawAxes(ctx, area, 'step', 'loss (log scale)', { yTicks, yText: (t) => formatValue(10 ** t, 2) });
  ctx.save();
  clip(ctx, area);
  if (best && best.loss > 0) {
    ctx.strokeStyle = COLOURS.exact;
    ctx.lineWidth = 2;
    ctx.setLineDash([7, 5]);
    const y = area.py(Math.log10(best.loss));
    ctx.beginPath();
    ctx.moveTo(area.left, y);
    ctx.lineTo(area.left + area.width, y);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  if (!points.x.length) { // no points, no loss
    ctx.restore();
    return;
  }
  ctx.strokeStyle = COLOURS.descent;
  ctx.lineWidth = 2;
  ctx.beginPath();
  let drawing = false;
  for (const [loss, step] of thin(fit.losses)) {
    const y = Number.isFinite(loss) ? area.py(Math.log10(Math.max(loss, 1e-300))) : area.top - 10;
    if (drawing) ctx.lineTo(area.px(step), y);
    else ctx.moveTo(area.px(step), y);
    drawing = true;
  }
  ctx.stroke();
  ctx.restore();
}

// ---------------------------------------------------------------- numbers and words

export function setText(id, text) {
  $(id).textContent = text;
}

export function showNumbers() {
  setText('val-steps', String(fit.steps));
  setText('val-a', formatValue(fit.a, 6));
  setText('val-b', formatValue(fit.b, 6));
  setText('val-loss', points.x.length ? formatValue(fit.loss, 6) : '—');
  const best = currentExact();
  const parity = $('exact-status');
  const cells = ['ex-a', 'ex-b', 'ex-loss', 'd-a', 'd-b', 'd-loss'];
  if (!best) {
    cells.forEach((id) => setText(id, '…'));
    if (exactInfo.version === pointsVersion && exactInfo.error) {
      cells.forEach((id) => setText(id, '—'));
      parity.className = 'parity parity-bad';
      parity.textContent = `The server: ${exactInfo.error}`;
    } else {
      parity.className = 'parity';
      parity.textContent = 'Asking the server for the exact answer…';
    }
    return;
  }
  const da = Math.abs(fit.a - best.a);
  const db = Math.abs(fit.b - best.b);
  setText('ex-a', formatValue(best.a, 6));
  setText('ex-b', formatValue(best.b, 6));
  setText('ex-loss', formatValue(best.loss, 6));
  setText('d-a', formatValue(da, 3));
  setText('d-b', formatValue(db, 3));
  setText('d-loss', formatValue(fit.loss - best.loss, 3));
  const close = da < CLOSE_ENOUGH && db < CLOSE_ENOUGH;
  parity.className = `parity ${close ? 'parity-ok' : ''}`;
  parity.textContent = close
    ? `Descent is within ${CLOSE_ENOUGH} of the exact answer (${best.method} on the server, ${count(best.n, 'point')}).`
    : `The exact answer: ${best.method} on the server, for ${count(best.n, 'point')}, in one go.`;
}

/** The valley's shape for the x descent sees: the largest safe SGD rate and how stretched it is. */
export function showValley() {
  const xs = settings.standardise ? (() => {
    const { mean, std } = meanStd(points.x);
    return points.x.map((v) => (v - mean) / std);
  })() : points.x;
  const shape = valleyShape(xs);
  setText('valley-rate', shape ? formatValue(shape.maxRate, 2) : '—');
  setText('valley-ratio', shape ? `${formatValue(shape.ratio, 3)}×` : '—');
  setText('valley-x', points.x.length ? formatValue(Math.max(...points.x.map(Math.abs)), 3) : '—');
}

/** Two sentences on what the last steps did. */
export function whatHappened() {
  const name = OPTIMIZER_NAMES[settings.optimizer];
  if (fit.diverged) {
    const e = fit.explosion;
    return `At a learning rate of ${e.rate} every step jumped past the bottom of the loss valley and landed ` +
      `higher up the other side, so the loss exploded from ${formatValue(e.from)} to ${formatValue(e.to)} in ` +
      `${count(e.steps, 'step')}. A smaller rate takes smaller steps that really go downhill; with large x it must be ` +
      'very small, which is why standardising x helps.';
  }
  if (!fit.steps) {
    return 'Nothing yet: press Step or Run. Each step asks TF.js for the gradient of the loss (which way, and how ' +
      'steeply, the loss rises as a and b change) and moves a and b a little the other way: the learning rate ' +
      'times the gradient.';
  }
  const best = currentExact();
  const gap = best ? Math.max(Math.abs(fit.a - best.a), Math.abs(fit.b - best.b)) : null;
  if (gap != null && gap < CLOSE_ENOUGH) {
    return `In ${count(fit.steps, 'step')}, ${name} walked a and b downhill on the loss surface to within ` +
      `${formatValue(gap, 2)} of the line the server solved exactly in one go. Training a neural network is ` +
      'this same loop, with millions of numbers in place of a and b and no exact answer to compare with.';
  }
  const far = points.x.length && Math.max(...points.x.map(Math.abs)) > 5 && !settings.standardise;
  const where = gap == null ? '' : `, ${formatValue(gap, 2)} from the exact answer`;
  if (far) {
    return `After ${count(fit.steps, 'step')} a and b are still on their way${where}. With x this large, ` +
      'the loss changes far faster with a than with b, so a rate small enough for a barely moves b: ' +
      'tick "Standardise x", or try Adam, which sizes each parameter\'s steps on its own.';
  }
  return `After ${count(fit.steps, 'step')} of ${name} a and b are still on their way${where}. Each step moves ` +
    'them against the gradient of the loss, by the learning rate times its size: Run to keep going, or raise the rate.';
}
