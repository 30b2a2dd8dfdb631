/**
 * The arithmetic of the /learn/line lesson that needs no TF.js (static/js/learn-line.js does the
 * descent itself with TF.js): seeded noisy points, the exact least-squares line in float64 (to
 * place the loss surface; the page's "exact answer" is the server's), the mean squared error,
 * standardising x, the log-scale learning-rate slider, axis ticks and the surface's colours.
 * Plain functions of plain numbers, so they can be tested on their own.
 */
import { seededRandom } from './random.js';

/** A standard normal number from `random` (uniform in [0, 1)), by Box-Muller. */
export function gaussian(random) {
  const u1 = 1 - random(); // (0, 1]: log(0) would be -Infinity
  const u2 = random();
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/**
 * `count` points near the line y = a x + b: x uniform in [xMin, xMax], y = a x + b plus normal
 * noise of standard deviation `noise`. The same seed gives the same points. {x: [], y: []}
 */
export function generatePoints({ a, b, noise, count, seed, xMin, xMax }) {
  const random = seededRandom(seed);
  const x = [];
  const y = [];
  for (let i = 0; i < count; i += 1) {
    const xi = xMin + (xMax - xMin) * random();
    x.push(xi);
    y.push(a * xi + b + noise * gaussian(random));
  }
  return { x, y };
}

/** Mean and standard deviation (population) of `values`; the deviation is 1 when it would be 0. */
export function meanStd(values) {
  const n = values.length;
  if (!n) return { mean: 0, std: 1 };
  const mean = values.reduce((sum, v) => sum + v, 0) / n;
  const variance = values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / n;
  return { mean, std: variance > 0 ? Math.sqrt(variance) : 1 };
}

/**
 * The line with the least mean squared error, in float64 (closed form): {a, b, loss}, or null
 * for fewer than 2 points or when every x is the same.
 */
export function leastSquares(xs, ys) {
  const n = xs.length;
  if (n < 2) return null;
  const { mean: mx } = meanStd(xs);
  const my = ys.reduce((sum, v) => sum + v, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i += 1) {
    sxx += (xs[i] - mx) ** 2;
    sxy += (xs[i] - mx) * (ys[i] - my);
  }
  if (!(sxx > 0)) return null;
  const a = sxy / sxx;
  const b = my - a * mx;
  return { a, b, loss: mse(a, b, xs, ys) };
}

/** mean((a x + b - y)^2) in float64; NaN for no points. */
export function mse(a, b, xs, ys) {
  let sum = 0;
  for (let i = 0; i < xs.length; i += 1) sum += (a * xs[i] + b - ys[i]) ** 2;
  return sum / xs.length;
}

/**
 * Descent on standardised x (x' = (x - mean) / std) fits y = a' x' + b'; the same line in x is
 * a = a' / std, b = b' - a' mean / std. These convert between the two.
 */
export function fromStandardised(ap, bp, { mean, std }) {
  return { a: ap / std, b: bp - (ap * mean) / std };
}

export function toStandardised(a, b, { mean, std }) {
  return { a: a * std, b: b + a * mean };
}

/** The learning-rate slider: positions 0..SLIDER_STEPS, log scale from RATE_MIN to RATE_MAX. */
export const RATE_MIN = 1e-4;
export const RATE_MAX = 10;
export const SLIDER_STEPS = 1000;

export function sliderToRate(position) {
  const lo = Math.log10(RATE_MIN);
  const hi = Math.log10(RATE_MAX);
  const rate = 10 ** (lo + ((hi - lo) * position) / SLIDER_STEPS);
  return Number(rate.toPrecision(3)); // 0.0316, not 0.031622776601683784
}

export function rateToSlider(rate) {
  const lo = Math.log10(RATE_MIN);
  const hi = Math.log10(RATE_MAX);
  const position = ((Math.log10(rate) - lo) / (hi - lo)) * SLIDER_STEPS;
  return Math.min(SLIDER_STEPS, Math.max(0, Math.round(position)));
}

/**
 * Whether descent has diverged: the loss is no longer a finite number, or it grew more than
 * `factor` times its value when descent started (at least 1e-3, so a start on the exact line
 * does not make every later wobble an explosion).
 */
export const EXPLODE_FACTOR = 1e6;

export function hasDiverged(loss, startLoss, factor = EXPLODE_FACTOR) {
  if (!Number.isFinite(loss)) return true;
  return startLoss != null && loss > factor * Math.max(startLoss, 1e-3);
}

/** About `count` round tick values (1, 2 or 5 times a power of ten) from lo to hi. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  }
  return ticks;
}

/** A number for a readout: 4 significant digits, exponents for the very small and very large. */
export function formatValue(value, digits = 4) {
  if (value == null) return '—';
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '∞' : '−∞';
  if (value === 0) return '0';
  const size = Math.abs(value);
  const text = size >= 1e5 || size < 1e-3 ? value.toExponential(digits - 2) : String(Number(value.toPrecision(digits)));
  return text.replaceAll('-', '−');
}

/**
 * The window of (a, b) the loss surface shows, {aMin, aMax, bMin, bMax}: centred on the exact
 * answer (`best`: {a, b, loss}; 0, 0 without one) and just holding the valley's contour through
 * `start`: the lines whose loss is at most the start's. That contour is the ellipse
 * d^T M d = L(start) - L* for d = (a - a*, b - b*) and M = [[mean x², mean x], [mean x, 1]], whose
 * extent is sqrt(dL (M^-1)_aa) across and sqrt(dL (M^-1)_bb) up. So with large x the window
 * shows a long, tilted valley, as steep as it really is.
 */
export function surfaceWindow(xs, best, start) {
  if (!best || xs.length < 2) {
    return { aMin: start.a - 3, aMax: start.a + 3, bMin: start.b - 3, bMax: start.b + 3 };
  }
  const n = xs.length;
  const mx = xs.reduce((sum, v) => sum + v, 0) / n;
  const mxx = xs.reduce((sum, v) => sum + v * v, 0) / n;
  const variance = Math.max(mxx - mx * mx, 1e-12);
  const startLoss = best.loss + mxx * (start.a - best.a) ** 2 + 2 * mx * (start.a - best.a) * (start.b - best.b)
    + (start.b - best.b) ** 2; // exactly L(start) for the least-squares line
  const rise = Math.max(startLoss - best.loss, 0.5 * best.loss, 1e-4);
  const halfA = 1.3 * Math.sqrt(rise / variance);
  const halfB = 1.3 * Math.sqrt((rise * mxx) / variance);
  return { aMin: best.a - halfA, aMax: best.a + halfA, bMin: best.b - halfB, bMax: best.b + halfB };
}

/** `size` values evenly from lo to hi, both included. */
export function linspace(lo, hi, size) {
  return Array.from({ length: size }, (_, i) => lo + ((hi - lo) * i) / (size - 1));
}

// Low loss light (cream), high loss dark (bark): the site's colours.
const PALETTE = [[255, 248, 225], [246, 211, 120], [226, 140, 60], [161, 79, 20], [62, 39, 35]];
export const BANDS = 14;

/**
 * The colour [r, g, b] for a loss on the surface: log10 of it placed between the grid's
 * smallest and largest (`lo`, `hi`, also log10), in BANDS steps, so the bands read as contours.
 */
export function surfaceColour(logLoss, lo, hi) {
  let t = hi > lo ? (logLoss - lo) / (hi - lo) : 0;
  t = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 1;
  t = Math.min(BANDS - 1, Math.floor(t * BANDS)) / (BANDS - 1);
  const scaled = t * (PALETTE.length - 1);
  const i = Math.min(PALETTE.length - 2, Math.floor(scaled));
  const f = scaled - i;
  return PALETTE[i].map((c, k) => Math.round(c + (PALETTE[i + 1][k] - c) * f));
}

/**
 * The shape of the loss valley for points with these x (whatever the y): the loss's second
 * derivatives in a and b are the matrix 2 [[mean x², mean x], [mean x, 1]]. Plain gradient
 * descent (SGD) explodes above a learning rate of 2 / its largest eigenvalue, and at a safe rate
 * needs about `ratio` (largest / smallest eigenvalue) steps to settle: large or off-centre x
 * make that ratio huge. {maxRate, ratio}, or null without points.
 */
export function valleyShape(xs) {
  const n = xs.length;
  if (!n) return null;
  const mx = xs.reduce((sum, v) => sum + v, 0) / n;
  const mxx = xs.reduce((sum, v) => sum + v * v, 0) / n;
  const trace = 2 * (mxx + 1);
  const det = 4 * Math.max(0, mxx - mx * mx);
  const largest = trace / 2 + Math.sqrt(Math.max(0, (trace * trace) / 4 - det));
  const smallest = det / largest;
  return { maxRate: 2 / largest, ratio: smallest > 0 ? largest / smallest : Infinity };
}
