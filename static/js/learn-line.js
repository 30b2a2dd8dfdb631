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
 * The lesson's code, one room per file:
 *   learn-line.js          this file: the start (TF.js's backend, the variables) and window.belka
 *   learn-line-state.js    the points, the settings, the fit and TF.js's handles: the state the
 *                          other files share; adding, moving and generating points
 *   learn-line-descent.js  gradient descent (TF.js): a step, Run, Pause, Reset; the loss surface
 *   learn-line-server.js   the exact least-squares answer, asked of the server
 *   learn-line-draw.js     drawing the plot, the loss surface and the loss curve; the numbers
 *                          and the words under them
 *   learn-line-input.js    pointer handling on the plot and the surface; the lesson's controls
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
import { startBackend, tf } from './lesson.js';
import { formatValue } from './line-fit.js';
import { $, engine, fit, generateFromForm, points, setAllPoints, settings, surface } from './learn-line-state.js';
import {
  afterSteps, descentStep, pause, reset, run, running, setStatus, statusText, summary, updateButtons,
} from './learn-line-descent.js';
import { exact } from './learn-line-server.js';
import { plotArea, requestRender } from './learn-line-draw.js';
import {
  setLearningRate, setOptimizer, setStandardise, setStart, showError, wireControls, wirePlot, wireSurface,
} from './learn-line-input.js';

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
