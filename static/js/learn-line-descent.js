/**
 * The /learn/line lesson's gradient descent, with TF.js (learn-line.js says how its files fit
 * together): the optimizer (SGD, momentum, Adam), one step of optimizer.minimize() on the mean
 * squared error, Run (steps each frame until paused, converged or diverged), Pause, Reset, the
 * status line and the buttons; and the loss surface, a GRID x GRID window of (a, b) computed in
 * one batched, tidied expression. Every tensor made here is tidied or disposed.
 */
import { count } from './format.js';
import { tf } from './lesson.js';
import {
  fromStandardised, hasDiverged, leastSquares, linspace, meanStd, mse, surfaceColour, surfaceWindow,
  toStandardised, formatValue,
} from './line-fit.js';
import { $, CALM_STEPS, GRID, OPTIMIZER_NAMES, engine, fit, points, settings, surface } from './learn-line-state.js';
import { requestRender, showText } from './learn-line-draw.js';

export let running = false;
export let statusText = '';
// ---------------------------------------------------------------- descent (TF.js)

export function makeOptimizer() {
  const rate = settings.learningRate;
  if (settings.optimizer === 'momentum') return tf.train.momentum(rate, 0.9);
  if (settings.optimizer === 'adam') return tf.train.adam(rate);
  return tf.train.sgd(rate);
}

/** Disposes the optimizer's state. (MomentumOptimizer.dispose() in TF.js 4.22 forgets the
 * learning-rate scalar it inherits from SGDOptimizer, `c`: disposed here.) */
export function dropOptimizer() {
  const { optimizer } = engine;
  if (!optimizer) return;
  optimizer.dispose();
  if (optimizer.c && !optimizer.c.isDisposed) optimizer.c.dispose();
  engine.optimizer = null;
}

export function applyLearningRate() {
  const { optimizer } = engine;
  if (!optimizer) return;
  // SGD and momentum keep the rate as a tensor (setLearningRate swaps it); Adam reads the number
  if (typeof optimizer.setLearningRate === 'function') optimizer.setLearningRate(settings.learningRate);
  else optimizer.learningRate = settings.learningRate;
}

/** Puts the page's a and b into the variables (as a' and b' when x is standardised). */
export function writeVariables() {
  const p = toStandardised(fit.a, fit.b, engine.stats);
  tf.tidy(() => {
    engine.a.assign(tf.scalar(p.a));
    engine.b.assign(tf.scalar(p.b));
  });
}

/** The points' tensors for the current points and standardisation. */
export function prepare() {
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
export const lossFunction = () => tf.tidy(() => tf.mean(tf.square(tf.sub(tf.add(tf.mul(engine.a, engine.x), engine.b), engine.y))));

/** One step of gradient descent; false when there is nothing to fit. */
export function descentStep() {
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

export function record(a, b, loss) {
  fit.path.push([a, b]);
  fit.losses.push(loss);
}

/** Back to the start: a and b, no steps, no path; the optimizer starts afresh. */
export function reset() {
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

export function run() {
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

export function frame() {
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

export function pause() {
  if (!running) return;
  running = false;
  afterSteps();
}

/** Status, banner, buttons and the "What just happened" box after steps. */
export function afterSteps() {
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

export function summary() {
  return { a: fit.a, b: fit.b, loss: fit.loss, steps: fit.steps, diverged: fit.diverged };
}

export function setStatus(text) {
  statusText = text;
  $('descent-status').textContent = text;
}

export function updateButtons() {
  const blocked = !engine.ready || fit.diverged;
  $('step').disabled = blocked || running;
  $('run').disabled = blocked || running;
  $('pause').disabled = !running;
  $('reset').disabled = !engine.ready;
}

// ---------------------------------------------------------------- the loss surface (TF.js)

/** The loss of every line in a GRID x GRID window of (a, b), as one batched TF.js expression. */
export function computeSurface() {
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
