/**
 * The /learn/line lesson: fitting y = a x + b to points by gradient descent with TF.js, next to
 * the exact least-squares answer from the server (POST /api/learn/line, app/api/learn.py).
 *
 * The points are plain numbers here (click the plot to add one, drag to move, shift-click or
 * right-click to delete, or generate noisy ones from a seed: static/js/line-fit.js). a and b are
 * two tf.variable scalars; each step is one optimizer.minimize() of the mean squared error
 * mean((a x + b - y)^2) with SGD, momentum (0.9) or Adam at the slider's learning rate. With
 * "Standardise x" on, descent fits y = a' x' + b' on x' = (x - mean) / std and the page shows the
 * same line in x (line-fit.js fromStandardised). The page keeps the line's a and b in float64
 * and measures its loss in float64; TF.js computes the gradients (float32). The loss surface is
 * the loss of a 64x64 grid of (a, b), computed by TF.js in one batched expression.
 *
 * Divergence: when the loss stops being a finite number or grows past 1e6 times its value when
 * descent started (line-fit.js hasDiverged), Run stops, Step and Run are disabled until Reset,
 * and a banner says the learning rate is too large.
 *
 * Tensors: the variables, the points' two tensors (rebuilt when the points change) and the
 * optimizer's own state; every step and every surface runs in tf.tidy or disposes what it made,
 * so tf.memory().numTensors stays flat while descent runs.
 *
 * Test and debug API, `window.belka`:
 *   ready              Promise: {ok, backend} once TF.js runs on the chosen backend, or {ok: false, error}
 *   setPoints(x, y)    replaces the points (two arrays of numbers) and resets descent
 *   generate(o)        replaces them with seeded noisy points, o = {a, b, noise, count, seed, xMin,
 *                      xMax} (each missing one from the form; xMax alone means xMin 0), resets
 *                      descent; the points {x, y}
 *   points()           {x, y}: copies of the points
 *   pointPosition(i)   {x, y}: where point i is on screen (client pixels), for clicking it
 *   setOptimizer(n)    "sgd", "momentum" or "adam" (a and b stay; the optimizer starts afresh)
 *   setLearningRate(r) the learning rate (the slider shows the nearest position)
 *   setStandardise(on) descent on standardised x or not
 *   setStart(a, b)     where descent starts (as clicking the loss surface); resets
 *   step(n)            Promise: n steps (fewer when the loss explodes): {a, b, loss, steps, diverged}
 *   run(), pause()     what the Run and Pause buttons do
 *   reset()            back to the start: a and b, no steps, no path
 *   exact()            Promise: the server's answer for the current points, {a, b, loss, n, method},
 *                      or {error} with its message
 *   state()            {a, b, loss, steps, diverged, converged, running, message, optimizer,
 *                      learningRate, standardise}
 *   numTensors()       tf.memory().numTensors
 */
import { count } from './format.js';
import { askServer, startBackend, tf } from './lesson.js';
import {
  fromStandardised, generatePoints, hasDiverged, leastSquares, linspace, meanStd, mse, niceTicks,
  RATE_MAX, RATE_MIN, rateToSlider, SLIDER_STEPS, sliderToRate, surfaceColour, surfaceWindow, toStandardised,
  valleyShape, formatValue,
} from './line-fit.js';

const $ = (id) => document.getElementById(id);
const MAX_POINTS = 500;
const GRID = 64; // the loss surface: GRID x GRID lines
const HIT_PX = 10; // how near (canvas pixels) a click must be to grab a point
const ASK_DELAY_MS = 300; // the server is asked once the points have stopped changing this long
const CALM_STEPS = 20; // steps in a row that hardly move a and b before Run calls it converged
const CLOSE_ENOUGH = 1e-3; // |a - a*| and |b - b*| under this: descent found the exact line
const MAX_DRAWN = 1500; // at most this many points of the path and loss curve are drawn
const OPTIMIZER_NAMES = { sgd: 'SGD', momentum: 'momentum', adam: 'Adam' };

// the site's colours (static/css/belka.css), for the canvases
const COLOURS = {
  point: '#c8641e', pointEdge: '#a14f14', descent: '#1565c0', exact: '#2e7d32', axis: '#7a6a60',
  grid: '#efe6dc', text: '#3e2723', error: 'rgba(179, 38, 30, 0.45)', start: '#3e2723',
};

// ---------------------------------------------------------------- state

const points = { x: [], y: [] };
let view = { xMin: -1, xMax: 1, yMin: -1, yMax: 1 }; // the plot's window onto the plane
let pointsVersion = 0;
const settings = { optimizer: 'sgd', learningRate: 0.1, perFrame: 3, standardise: false };
const fit = {
  start: { a: 0, b: 0 },
  a: 0, b: 0, loss: NaN, steps: 0,
  startLoss: null, // the loss when descent (re)started: divergence is measured from it
  diverged: false, converged: false, calm: 0,
  explosion: null, // {from, to, steps, rate} when the loss exploded
  path: [], losses: [], // (a, b) and the loss after each step, step 0 first
};
let running = false;
let statusText = '';

/** TF.js's part, once the backend runs: the variables, the points as tensors, the optimizer. */
const engine = {
  ready: false,
  a: null, b: null, // tf.variable scalars: the line's a and b (a' and b' when x is standardised)
  x: null, y: null, // the points' tensors, rebuilt when `stale`
  stats: { mean: 0, std: 1 }, // how x was standardised for x (mean 0, std 1: not at all)
  optimizer: null,
  stale: true,
};

/** The loss surface's grid of losses, recomputed when the points or the start change. */
const surface = { window: surfaceWindow([], null, fit.start), image: null, stale: true };

// ---------------------------------------------------------------- points

function setAllPoints(x, y) {
  if (x.length !== y.length) throw new Error(`x and y: ${x.length} and ${y.length} values; give as many of each.`);
  if (x.length > MAX_POINTS) throw new Error(`${x.length} points: this page takes at most ${MAX_POINTS}.`);
  if (![...x, ...y].every(Number.isFinite)) throw new Error('Every x and y must be a finite number.');
  points.x = x.map(Number);
  points.y = y.map(Number);
  view = viewFor(points);
  pointsChanged();
  reset();
}

/** The plot's window for `pts`: all of them, with a margin. */
function viewFor(pts) {
  if (!pts.x.length) return { xMin: -1, xMax: 1, yMin: -3, yMax: 3 };
  const range = (values) => {
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (hi - lo < 1e-9) {
      lo -= 1;
      hi += 1;
    }
    const pad = (hi - lo) * 0.08;
    return [lo - pad, hi + pad];
  };
  const [xMin, xMax] = range(pts.x);
  const [yMin, yMax] = range(pts.y);
  return { xMin, xMax, yMin, yMax };
}

/** After any change to the points: tensors, surface and the server's answer follow. */
function pointsChanged() {
  pointsVersion += 1;
  engine.stale = true;
  surface.stale = true;
  fit.startLoss = null; // measured again from the next step
  fit.converged = false;
  fit.calm = 0;
  fit.loss = mse(fit.a, fit.b, points.x, points.y);
  $('point-count').textContent = count(points.x.length, 'point');
  scheduleExact();
  showText();
  requestRender();
}

function addPoint(x, y) {
  if (points.x.length >= MAX_POINTS) {
    setStatus(`That is ${MAX_POINTS} points, this page's most: drag or delete some instead.`);
    return -1;
  }
  points.x.push(x);
  points.y.push(y);
  pointsChanged();
  return points.x.length - 1;
}

function removePoint(i) {
  points.x.splice(i, 1);
  points.y.splice(i, 1);
  pointsChanged();
}

function generateFromForm(overrides = {}) {
  const [formMin, formMax] = $('gen-range').value.split(',').map(Number);
  const number = (id, fallback) => {
    const value = Number($(id).value);
    return Number.isFinite(value) ? value : fallback;
  };
  const options = {
    a: number('gen-a', 2), b: number('gen-b', -1), noise: Math.max(0, number('gen-noise', 0.5)),
    count: Math.round(Math.min(MAX_POINTS, Math.max(2, number('gen-count', 40)))),
    seed: Math.round(number('gen-seed', 1)), xMin: formMin, xMax: formMax, ...overrides,
  };
  if (overrides.xMax != null && overrides.xMin == null) options.xMin = 0;
  if (!(options.xMax > options.xMin)) throw new Error(`x from ${options.xMin} to ${options.xMax}: xMax must be larger.`);
  // the form shows what was generated, so the same button press gives the same points again
  for (const key of ['a', 'b', 'noise', 'count', 'seed']) $(`gen-${key}`).value = String(options[key]);
  const range = `${options.xMin},${options.xMax}`;
  if ([...$('gen-range').options].some((o) => o.value === range)) $('gen-range').value = range;
  const generated = generatePoints(options);
  setAllPoints(generated.x, generated.y);
  setStatus(`${count(options.count, 'point')} near y = ${options.a} x ${options.b < 0 ? '−' : '+'} ` +
    `${Math.abs(options.b)}, seed ${options.seed}.`);
  return { x: [...points.x], y: [...points.y] };
}

// ---------------------------------------------------------------- descent (TF.js)

function makeOptimizer() {
  const rate = settings.learningRate;
  if (settings.optimizer === 'momentum') return tf.train.momentum(rate, 0.9);
  if (settings.optimizer === 'adam') return tf.train.adam(rate);
  return tf.train.sgd(rate);
}

/** Disposes the optimizer's state. (MomentumOptimizer.dispose() in TF.js 4.22 forgets the
 * learning-rate scalar it inherits from SGDOptimizer, `c`: disposed here.) */
function dropOptimizer() {
  const { optimizer } = engine;
  if (!optimizer) return;
  optimizer.dispose();
  if (optimizer.c && !optimizer.c.isDisposed) optimizer.c.dispose();
  engine.optimizer = null;
}

function applyLearningRate() {
  const { optimizer } = engine;
  if (!optimizer) return;
  // SGD and momentum keep the rate as a tensor (setLearningRate swaps it); Adam reads the number
  if (typeof optimizer.setLearningRate === 'function') optimizer.setLearningRate(settings.learningRate);
  else optimizer.learningRate = settings.learningRate;
}

/** Puts the page's a and b into the variables (as a' and b' when x is standardised). */
function writeVariables() {
  const p = toStandardised(fit.a, fit.b, engine.stats);
  tf.tidy(() => {
    engine.a.assign(tf.scalar(p.a));
    engine.b.assign(tf.scalar(p.b));
  });
}

/** The points' tensors for the current points and standardisation. */
function prepare() {
  if (!engine.stale) return;
  tf.dispose([engine.x, engine.y]);
  engine.stats = settings.standardise ? meanStd(points.x) : { mean: 0, std: 1 };
  const { mean, std } = engine.stats;
  engine.x = tf.tensor1d(points.x.map((v) => (v - mean) / std));
  engine.y = tf.tensor1d(points.y);
  engine.stale = false;
  writeVariables();
}

/** The loss TF.js differentiates: mean((a x + b - y)^2). */
const lossFunction = () => tf.tidy(() => tf.mean(tf.square(tf.sub(tf.add(tf.mul(engine.a, engine.x), engine.b), engine.y))));

/** One step of gradient descent; false when there is nothing to fit. */
function descentStep() {
  if (!engine.ready || !points.x.length || fit.diverged) return false;
  prepare();
  engine.optimizer ??= makeOptimizer();
  if (fit.startLoss == null) fit.startLoss = mse(fit.a, fit.b, points.x, points.y);
  engine.optimizer.minimize(lossFunction); // the gradients, then a -= rate * da (for SGD), the same for b
  const both = tf.stack([engine.a, engine.b]);
  const [ap, bp] = both.dataSync();
  both.dispose();
  const { a, b } = fromStandardised(ap, bp, engine.stats);
  const moved = Math.max(Math.abs(a - fit.a), Math.abs(b - fit.b));
  fit.a = a;
  fit.b = b;
  fit.steps += 1;
  fit.loss = mse(a, b, points.x, points.y);
  record(a, b, fit.loss);
  if (hasDiverged(fit.loss, fit.startLoss)) {
    fit.diverged = true;
    fit.explosion = { from: fit.startLoss, to: fit.loss, steps: fit.steps, rate: settings.learningRate };
  } else {
    fit.calm = moved <= 1e-7 * (1 + Math.abs(a) + Math.abs(b)) ? fit.calm + 1 : 0;
    fit.converged = fit.calm >= CALM_STEPS;
  }
  return true;
}

function record(a, b, loss) {
  fit.path.push([a, b]);
  fit.losses.push(loss);
}

/** Back to the start: a and b, no steps, no path; the optimizer starts afresh. */
function reset() {
  pause();
  Object.assign(fit, {
    a: fit.start.a, b: fit.start.b, steps: 0, startLoss: null, diverged: false, converged: false, calm: 0,
    explosion: null, path: [], losses: [],
  });
  fit.loss = mse(fit.a, fit.b, points.x, points.y);
  record(fit.a, fit.b, fit.loss);
  if (engine.ready) {
    dropOptimizer();
    engine.stale = true; // variables rewritten from the start
  }
  surface.stale = true; // its window holds the start
  setStatus(points.x.length ? `Ready: a = ${formatValue(fit.a)}, b = ${formatValue(fit.b)}. Press Step or Run.`
    : 'Click the plot to add points, or generate some.');
  afterSteps();
}

function run() {
  if (running || !engine.ready) return;
  if (fit.diverged) {
    setStatus('The loss exploded: press Reset first, then lower the learning rate.');
    return;
  }
  if (!points.x.length) {
    setStatus('Add points first: click the plot, or generate some.');
    return;
  }
  running = true;
  fit.converged = false;
  fit.calm = 0;
  setStatus(`Running ${OPTIMIZER_NAMES[settings.optimizer]} at a learning rate of ${settings.learningRate}…`);
  updateButtons();
  requestAnimationFrame(frame);
}

function frame() {
  if (!running) return;
  for (let i = 0; i < settings.perFrame; i += 1) {
    if (!descentStep() || fit.diverged || fit.converged) {
      running = false;
      break;
    }
  }
  afterSteps();
  if (running) requestAnimationFrame(frame);
}

function pause() {
  if (!running) return;
  running = false;
  afterSteps();
}

/** Status, banner, buttons and the "What just happened" box after steps. */
function afterSteps() {
  const banner = $('line-alert');
  if (fit.diverged) {
    const e = fit.explosion;
    setStatus(`Stopped after ${count(e.steps, 'step')}: the loss exploded. The learning rate is too large.`);
    banner.querySelector('.banner-title').textContent = 'The loss exploded: the learning rate is too large.';
    banner.querySelector('.banner-detail').textContent = `At a rate of ${e.rate}, each step jumped past the bottom ` +
      `of the valley and landed higher up the other side, so the loss grew from ${formatValue(e.from)} to ` +
      `${formatValue(e.to)} in ${count(e.steps, 'step')}. Press Reset, then lower the rate` +
      `${settings.standardise ? '' : ' or tick "Standardise x"'}.`;
    banner.hidden = false;
  } else {
    banner.hidden = true;
    if (fit.converged) setStatus(`Converged after ${count(fit.steps, 'step')}: a and b no longer change.`);
    else if (running) setStatus(`Running ${OPTIMIZER_NAMES[settings.optimizer]}: ${count(fit.steps, 'step')}…`);
    else if (fit.steps) setStatus(`${count(fit.steps, 'step')} of ${OPTIMIZER_NAMES[settings.optimizer]}.`);
  }
  updateButtons();
  showText();
  requestRender();
}

function summary() {
  return { a: fit.a, b: fit.b, loss: fit.loss, steps: fit.steps, diverged: fit.diverged };
}

function setStatus(text) {
  statusText = text;
  $('descent-status').textContent = text;
}

function updateButtons() {
  const blocked = !engine.ready || fit.diverged;
  $('step').disabled = blocked || running;
  $('run').disabled = blocked || running;
  $('pause').disabled = !running;
  $('reset').disabled = !engine.ready;
}

// ---------------------------------------------------------------- the exact answer (server)

const exactInfo = { version: -1, answer: null, error: null };
let exactTimer = null;
let exactWaiters = [];

function scheduleExact() {
  clearTimeout(exactTimer);
  exactTimer = setTimeout(askExact, ASK_DELAY_MS);
}

async function askExact() {
  exactTimer = null;
  const version = pointsVersion;
  let answer = null;
  let error = null;
  try {
    answer = await askServer('/api/learn/line', { x: points.x, y: points.y });
  } catch (problem) {
    error = problem.message;
  }
  if (version !== pointsVersion) return; // the points changed meanwhile: their own ask is on its way
  Object.assign(exactInfo, { version, answer, error });
  const waiters = exactWaiters;
  exactWaiters = [];
  showText();
  waiters.forEach((resolve) => resolve(exactResult()));
  requestRender();
}

function exactResult() {
  return exactInfo.error ? { error: exactInfo.error } : { ...exactInfo.answer };
}

function exact() {
  if (exactInfo.version === pointsVersion) return Promise.resolve(exactResult());
  const answer = new Promise((resolve) => exactWaiters.push(resolve));
  if (exactTimer != null) {
    clearTimeout(exactTimer);
    askExact();
  }
  return answer;
}

/** The server's answer when it is for the current points, else null. */
function currentExact() {
  return exactInfo.version === pointsVersion && exactInfo.answer ? exactInfo.answer : null;
}

// ---------------------------------------------------------------- the loss surface (TF.js)

/** The loss of every line in a GRID x GRID window of (a, b), as one batched TF.js expression. */
function computeSurface() {
  surface.stale = false;
  surface.window = surfaceWindow(points.x, leastSquares(points.x, points.y), fit.start);
  const n = points.x.length;
  if (!n || !engine.ready) {
    surface.image = null;
    return;
  }
  const { aMin, aMax, bMin, bMax } = surface.window;
  const values = tf.tidy(() => {
    const as = tf.tensor1d(linspace(aMin, aMax, GRID)); // across
    const bs = tf.tensor1d(linspace(bMax, bMin, GRID)); // down: the largest b on top
    const a = tf.reshape(tf.tile(tf.reshape(as, [1, GRID]), [GRID, 1]), [GRID * GRID, 1]);
    const b = tf.reshape(tf.tile(tf.reshape(bs, [GRID, 1]), [1, GRID]), [GRID * GRID, 1]);
    const x = tf.tensor2d(points.x, [1, n]);
    const y = tf.tensor2d(points.y, [1, n]);
    return tf.mean(tf.square(tf.sub(tf.add(tf.mul(a, x), b), y)), 1); // [GRID * GRID]
  });
  const losses = values.dataSync();
  values.dispose();
  const logs = Array.from(losses, (v) => Math.log10(Math.max(v, 1e-12)));
  const lo = Math.min(...logs);
  const hi = Math.max(...logs);
  const image = new ImageData(GRID, GRID);
  logs.forEach((v, i) => {
    const [r, g, b] = surfaceColour(v, lo, hi);
    image.data.set([r, g, b, 255], i * 4);
  });
  const canvas = document.createElement('canvas');
  canvas.width = GRID;
  canvas.height = GRID;
  canvas.getContext('2d').putImageData(image, 0, 0);
  surface.image = canvas;
}

// ---------------------------------------------------------------- drawing

let renderQueued = false;
function requestRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  if (surface.stale) computeSurface();
  drawPlot();
  drawSurface();
  drawCurve();
  showText();
}

/** The readouts and the words: at once (the canvases wait for the next frame). */
function showText() {
  showNumbers();
  showValley();
  $('what-happened').textContent = whatHappened();
}

/** A chart area on a canvas: its pixel box and its window onto the numbers, with conversions. */
function chartArea(canvas, margin, window) {
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

const tickText = (v) => formatValue(v, 3);

/** Grid lines, ticks and axis names around `area`. */
function drawAxes(ctx, area, xName, yName, { yTicks = niceTicks(area.yMin, area.yMax, 5), yText = tickText } = {}) {
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

function clip(ctx, area) {
  ctx.beginPath();
  ctx.rect(area.left, area.top, area.width, area.height);
  ctx.clip();
}

const PLOT_MARGIN = { left: 56, right: 14, top: 14, bottom: 40 };

function plotArea() {
  return chartArea($('plot'), PLOT_MARGIN, view);
}

/** y = a x + b across `area` (nothing when a or b is not a number). */
function drawLine(ctx, area, a, b, colour, dashed) {
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

function drawPlot() {
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

function lineText(a, b) {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return 'no line (the numbers overflowed)';
  return `${formatValue(a)} x ${b < 0 ? '−' : '+'} ${formatValue(Math.abs(b))}`;
}

const SURFACE_MARGIN = { left: 50, right: 10, top: 10, bottom: 40 };

function surfaceArea() {
  const { aMin, aMax, bMin, bMax } = surface.window;
  return chartArea($('surface'), SURFACE_MARGIN, { xMin: aMin, xMax: aMax, yMin: bMin, yMax: bMax });
}

/** Every k-th of `items`, at most MAX_DRAWN of them, the last one always. */
function thin(items) {
  if (items.length <= MAX_DRAWN) return items.map((item, i) => [item, i]);
  const stride = Math.ceil(items.length / MAX_DRAWN);
  const kept = [];
  for (let i = 0; i < items.length; i += stride) kept.push([items[i], i]);
  if (kept[kept.length - 1][1] !== items.length - 1) kept.push([items[items.length - 1], items.length - 1]);
  return kept;
}

function drawSurface() {
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

const CURVE_MARGIN = { left: 56, right: 18, top: 10, bottom: 40 };

function drawCurve() {
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

function setText(id, text) {
  $(id).textContent = text;
}

function showNumbers() {
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
function showValley() {
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
function whatHappened() {
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

// ---------------------------------------------------------------- pointer on the plot

const drag = { index: -1, pointer: null };

/** Where a pointer event is on the canvas, in canvas pixels. */
function canvasPoint(canvas, event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
}

function nearestPoint(px, py) {
  const area = plotArea();
  let best = -1;
  let bestDistance = HIT_PX;
  points.x.forEach((x, i) => {
    const distance = Math.hypot(area.px(x) - px, area.py(points.y[i]) - py);
    if (distance <= bestDistance) {
      best = i;
      bestDistance = distance;
    }
  });
  return best;
}

function wirePlot() {
  const canvas = $('plot');
  canvas.addEventListener('contextmenu', (event) => event.preventDefault());
  canvas.addEventListener('pointerdown', (event) => {
    const [px, py] = canvasPoint(canvas, event);
    const area = plotArea();
    const hit = nearestPoint(px, py);
    if (event.button === 2 || event.shiftKey) {
      if (hit >= 0) removePoint(hit);
      return;
    }
    if (event.button !== 0) return;
    if (px < area.left || px > area.left + area.width || py < area.top || py > area.top + area.height) return;
    drag.index = hit >= 0 ? hit : addPoint(area.x(px), area.y(py));
    if (drag.index < 0) return;
    drag.pointer = event.pointerId;
    canvas.setPointerCapture(event.pointerId);
    requestRender();
  });
  canvas.addEventListener('pointermove', (event) => {
    const [px, py] = canvasPoint(canvas, event);
    if (drag.pointer !== event.pointerId) {
      canvas.style.cursor = nearestPoint(px, py) >= 0 ? 'grab' : 'crosshair';
      return;
    }
    const area = plotArea();
    const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
    points.x[drag.index] = area.x(clamp(px, area.left, area.left + area.width));
    points.y[drag.index] = area.y(clamp(py, area.top, area.top + area.height));
    canvas.style.cursor = 'grabbing';
    pointsChanged();
  });
  const release = (event) => {
    if (drag.pointer !== event.pointerId) return;
    drag.index = -1;
    drag.pointer = null;
    canvas.style.cursor = 'crosshair';
    requestRender();
  };
  canvas.addEventListener('pointerup', release);
  canvas.addEventListener('pointercancel', release);
}

function setStart(a, b) {
  if (!Number.isFinite(a) || !Number.isFinite(b)) throw new Error('The start needs a finite a and b.');
  fit.start = { a, b };
  reset();
}

function wireSurface() {
  const canvas = $('surface');
  canvas.addEventListener('click', (event) => {
    const [px, py] = canvasPoint(canvas, event);
    const area = surfaceArea();
    if (px < area.left || px > area.left + area.width || py < area.top || py > area.top + area.height) return;
    setStart(Number(area.x(px).toPrecision(4)), Number(area.y(py).toPrecision(4)));
  });
}

// ---------------------------------------------------------------- controls

function setOptimizer(name) {
  if (!(name in OPTIMIZER_NAMES)) throw new Error(`Unknown optimizer "${name}": use ${Object.keys(OPTIMIZER_NAMES).join(', ')}.`);
  settings.optimizer = name;
  $('optimizer').value = name;
  if (engine.ready) dropOptimizer(); // its state (momentum, Adam's averages) starts afresh; a and b stay
  afterSteps();
}

function setLearningRate(rate) {
  if (!(rate > 0) || !Number.isFinite(rate)) throw new Error(`A learning rate must be a positive number, not ${rate}.`);
  settings.learningRate = rate;
  $('rate').value = String(rateToSlider(rate));
  $('rate-value').textContent = String(rate);
  applyLearningRate();
  requestRender();
}

function setStandardise(on) {
  settings.standardise = Boolean(on);
  $('standardise').checked = settings.standardise;
  if (engine.ready) {
    dropOptimizer(); // its state was for the other x
    engine.stale = true;
  }
  afterSteps();
}

function wireControls() {
  $('rate').min = '0';
  $('rate').max = String(SLIDER_STEPS);
  $('rate-range').textContent = `${RATE_MIN} to ${RATE_MAX}`;
  $('optimizer').addEventListener('change', (event) => setOptimizer(event.target.value));
  $('rate').addEventListener('input', (event) => setLearningRate(sliderToRate(Number(event.target.value))));
  $('per-frame').addEventListener('change', (event) => {
    settings.perFrame = Number(event.target.value) || 1;
  });
  $('standardise').addEventListener('change', (event) => setStandardise(event.target.checked));
  $('step').addEventListener('click', () => {
    if (descentStep()) afterSteps();
    else if (!points.x.length) setStatus('Add points first: click the plot, or generate some.');
  });
  $('run').addEventListener('click', run);
  $('pause').addEventListener('click', pause);
  $('reset').addEventListener('click', reset);
  $('show-errors').addEventListener('change', requestRender);
  $('clear-points').addEventListener('click', () => setAllPoints([], []));
  const generate = () => {
    try {
      generateFromForm();
    } catch (error) {
      setStatus(error.message);
    }
  };
  $('generate').addEventListener('click', generate);
  $('reseed').addEventListener('click', () => {
    $('gen-seed').value = String((Math.round(Number($('gen-seed').value)) || 0) + 1);
    generate();
  });
  settings.optimizer = $('optimizer').value in OPTIMIZER_NAMES ? $('optimizer').value : 'sgd';
  settings.perFrame = Number($('per-frame').value) || 3;
  settings.standardise = $('standardise').checked;
  setLearningRate(settings.learningRate);
}

function showError(title, text) {
  const banner = document.createElement('div');
  banner.className = 'banner banner-error';
  banner.setAttribute('role', 'alert');
  const p = document.createElement('p');
  p.className = 'banner-text';
  const strong = document.createElement('strong');
  strong.textContent = title;
  p.append(strong, ` ${text}`);
  banner.append(p);
  $('messages').append(banner);
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    const { backend } = await startBackend({ gradients: true });
    engine.a = tf.tidy(() => tf.variable(tf.scalar(0)));
    engine.b = tf.tidy(() => tf.variable(tf.scalar(0)));
    engine.ready = true;
    engine.stale = true;
    surface.stale = true;
    if (!fit.steps && points.x.length) {
      setStatus(`${count(points.x.length, 'point')}; descent starts from a = ${formatValue(fit.a)}, ` +
        `b = ${formatValue(fit.b)}. Press Step or Run.`);
    }
    updateButtons();
    requestRender();
    return { ok: true, backend };
  } catch (error) {
    showError('TensorFlow.js could not start.', error.message);
    setStatus('Not ready.');
    return { ok: false, error: error.message };
  }
}

wireControls();
wirePlot();
wireSurface();
generateFromForm();
const ready = start();

window.belka = {
  ready,
  setPoints: (x, y) => setAllPoints(x, y),
  generate: (options = {}) => generateFromForm(options),
  points: () => ({ x: [...points.x], y: [...points.y] }),
  pointPosition(i) {
    const canvas = $('plot');
    const area = plotArea();
    const box = canvas.getBoundingClientRect();
    return {
      x: box.left + (area.px(points.x[i]) * box.width) / canvas.width,
      y: box.top + (area.py(points.y[i]) * box.height) / canvas.height,
    };
  },
  setOptimizer,
  setLearningRate,
  setStandardise,
  setStart,
  async step(n = 1) {
    await ready;
    pause();
    for (let i = 0; i < n; i += 1) {
      if (!descentStep() || fit.diverged) break;
      if (i % 200 === 199) await new Promise((resolve) => { setTimeout(resolve, 0); });
    }
    afterSteps();
    return summary();
  },
  run,
  pause,
  reset,
  exact,
  state: () => ({
    ...summary(), converged: fit.converged, running, message: statusText, optimizer: settings.optimizer,
    learningRate: settings.learningRate, standardise: settings.standardise,
  }),
  numTensors: () => tf.memory().numTensors,
};
