/**
 * The /learn/line lesson's input (learn-line.js says how its files fit together): the pointer
 * on the plot (click to add a point, drag to move it, shift-click or right-click to delete) and
 * on the loss surface (click: where descent starts); the controls (optimizer, learning rate,
 * standardise, steps per frame, Step, Run, Pause, Reset, Generate) and the error banner.
 */
import { RATE_MAX, RATE_MIN, rateToSlider, SLIDER_STEPS, sliderToRate } from './line-fit.js';
import {
  $, HIT_PX, OPTIMIZER_NAMES, addPoint, engine, fit, generateFromForm, points, pointsChanged, removePoint,
  setAllPoints, settings,
} from './learn-line-state.js';
import {
  afterSteps, applyLearningRate, descentStep, dropOptimizer, pause, reset, run, setStatus,
} from './learn-line-descent.js';
import { plotArea, requestRender, surfaceArea } from './learn-line-draw.js';

// ---------------------------------------------------------------- pointer on the plot

export const drag = { index: -1, pointer: null };

/** Where a pointer event is on the canvas, in canvas pixels. */
export function canvasPoint(canvas, event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
}

export function nearestPoint(px, py) {
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

export function wirePlot() {
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

export function setStart(a, b) {
  if (!Number.isFinite(a) || !Number.isFinite(b)) throw new Error('The start needs a finite a and b.');
  fit.start = { a, b };
  reset();
}

export function wireSurface() {
  const canvas = $('surface');
  canvas.addEventListener('click', (event) => {
    const [px, py] = canvasPoint(canvas, event);
    const area = surfaceArea();
    if (px < area.left || px > area.left + area.width || py < area.top || py > area.top + area.height) return;
    setStart(Number(area.x(px).toPrecision(4)), Number(area.y(py).toPrecision(4)));
  });
}

// ---------------------------------------------------------------- controls

export function setOptimizer(name) {
  if (!(name in OPTIMIZER_NAMES)) throw new Error(`Unknown optimizer "${name}": use ${Object.keys(OPTIMIZER_NAMES).join(', ')}.`);
  settings.optimizer = name;
  $('optimizer').value = name;
  if (engine.ready) dropOptimizer(); // its state (momentum, Adam's averages) starts afresh; a and b stay
  afterSteps();
}

export function setLearningRate(rate) {
  if (!(rate > 0) || !Number.isFinite(rate)) throw new Error(`A learning rate must be a positive number, not ${rate}.`);
  settings.learningRate = rate;
  $('rate').value = String(rateToSlider(rate));
  $('rate-value').textContent = String(rate);
  applyLearningRate();
  requestRender();
}

export function setStandardise(on) {
  settings.standardise = Boolean(on);
  $('standardise').checked = settings.standardise;
  if (engine.ready) {
    dropOptimizer(); // its state was for the other x
    engine.stale = true;
  }
  afterSteps();
}

export function wireControls() {
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

export function showError(title, text) {
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
