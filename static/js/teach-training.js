/**
 * The /teach page's training (teach.js says how its files fit together): the pictures'
 * features (and their augmented views') sent to the worker, which trains the head and reports
 * each epoch; the loss and accuracy chart; the confusion matrix on the validation pictures
 * (the head's logits computed here in plain JavaScript from its saved weights).
 */
import { count, formatPercent } from './format.js';
import { $, engine, persist, serial, setText, state } from './teach-state.js';

// ---------------------------------------------------------------- training

export function fieldNumber(id) {
  return Number($(id).value);
}

export function train(options = {}) {
  return serial(async () => {
    const labels = [];
    const rows = [];
    state.classes.forEach((entry, index) => entry.samples.forEach((s) => { labels.push(index); rows.push(s.features); }));
    const features = new Float32Array(rows.length * state.features);
    rows.forEach((row, i) => features.set(row, i * state.features));
    // the augmented views' features, and the sample each came from
    const viewRows = [];
    const of = [];
    state.classes.flatMap((entry) => entry.samples).forEach((sample, i) => {
      const viewCount = sample.views ? sample.views.length / state.features : 0;
      for (let k = 0; k < viewCount; k += 1) {
        viewRows.push(sample.views.subarray(k * state.features, (k + 1) * state.features));
        of.push(i);
      }
    });
    const views = viewRows.length ? { features: new Float32Array(viewRows.length * state.features), of } : null;
    viewRows.forEach((row, i) => views.features.set(row, i * state.features));
    const settings = {
      epochs: fieldNumber('epochs'), learningRate: fieldNumber('learning-rate'), batchSize: fieldNumber('batch-size'),
      hidden: fieldNumber('hidden'), validationSplit: fieldNumber('validation'), seed: fieldNumber('seed'), ...options,
    };
    const history = [];
    state.training = true;
    $('train').disabled = true;
    $('stop').hidden = false;
    const bar = $('train-progress');
    bar.hidden = false;
    bar.max = settings.epochs;
    bar.value = 0;
    setText('train-status', `Training on ${count(labels.length, 'picture')}` +
      (views ? ` and ${count(of.length, 'augmented view')} of them…` : '…'));
    try {
      const result = await engine.call('train', { features, labels, views, classes: state.classes.length, ...settings }, {
        onProgress: (entry) => {
          history.push(entry);
          bar.value = entry.epoch;
          drawChart(history);
          setText('train-status', epochText(entry, settings.epochs));
        },
      });
      const names = state.classes.map((c) => c.name);
      state.trained = { ...result, labels: names, settings,
        confusion: confusionMatrix(result, result.split.val.map((i) => rows[i]), result.split.val.map((i) => labels[i]),
          names.length) };
      showTrained();
      await persist();
      return { ...result, confusion: state.trained.confusion };
    } catch (error) {
      setText('train-status', error.name === 'AbortError' ? 'Stopped.' : `Training failed: ${error.message}`);
      if (error.name !== 'AbortError') throw error;
      return null;
    } finally {
      state.training = false;
      $('train').disabled = false;
      $('stop').hidden = true;
      bar.hidden = true;
    }
  });
}

export function epochText(entry, epochs) {
  const val = entry.valAccuracy == null ? 'no validation pictures'
    : `validation accuracy ${formatPercent(entry.valAccuracy)}, loss ${entry.valLoss.toFixed(3)}`;
  return `Epoch ${entry.epoch} of ${epochs}: accuracy ${formatPercent(entry.accuracy)}, loss ` +
    `${entry.loss.toFixed(3)}; ${val}.`;
}

/** The trained head's chart, last epoch and confusion matrix. */
export function showTrained() {
  const { history, settings, confusion, labels } = state.trained;
  drawChart(history);
  setText('train-status', `Done. ${epochText(history[history.length - 1], settings.epochs)}`);
  setText('try-status', 'Choose a picture to try your classes.');
  showConfusion(confusion, labels);
}

/** The head's logits for one row of features (plain JS: weightSpecs and data as saved). */
export function headLogits({ weightSpecs, data }, features) {
  let h = features;
  let offset = 0;
  for (let i = 0; i < weightSpecs.length; i += 2) {
    const [inputs, outputs] = weightSpecs[i].shape;
    const kernel = data.subarray(offset, offset + inputs * outputs);
    offset += inputs * outputs;
    const bias = data.subarray(offset, offset + outputs);
    offset += outputs;
    const y = Float32Array.from(bias);
    for (let k = 0; k < inputs; k += 1) {
      const value = h[k];
      if (value !== 0) for (let o = 0; o < outputs; o += 1) y[o] += value * kernel[k * outputs + o];
    }
    h = i + 2 < weightSpecs.length ? y.map((v) => Math.max(0, v)) : y;
  }
  return h;
}

/** counts[true class][predicted class] over the validation pictures. */
export function confusionMatrix(head, rows, labels, classes) {
  const counts = Array.from({ length: classes }, () => new Array(classes).fill(0));
  rows.forEach((row, i) => {
    const logits = headLogits(head, row);
    counts[labels[i]][logits.indexOf(Math.max(...logits))] += 1;
  });
  return counts;
}

export function showConfusion(counts, labels) {
  const table = $('confusion');
  const total = counts.flat().reduce((a, b) => a + b, 0);
  if (!total) {
    table.replaceChildren();
    return;
  }
  const cell = (tag, text, className) => {
    const element = document.createElement(tag);
    element.textContent = text;
    if (className) element.className = className;
    return element;
  };
  const head = document.createElement('tr');
  head.append(cell('th', 'true \\ predicted'), ...labels.map((label) => cell('th', label)));
  const body = counts.map((row, t) => {
    const tr = document.createElement('tr');
    tr.append(cell('th', labels[t]), ...row.map((n, p) => cell('td', String(n), p === t ? 'right' : (n ? 'wrong' : ''))));
    return tr;
  });
  const caption = cell('caption', `Validation pictures: ${count(total, 'picture')}, ` +
    `${formatPercent(counts.reduce((n, row, t) => n + row[t], 0) / total)} right.`);
  table.replaceChildren(caption, head, ...body);
}

/** Loss (left scale) and accuracy (0 to 1, right) per epoch; dashed: validation. */
export function drawChart(history) {
  const canvas = $('train-chart');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  const pad = 24;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = '#e8ded3';
  ctx.strokeRect(pad, 8, width - 2 * pad, height - pad - 8);
  if (!history.length) return;
  const maxLoss = Math.max(...history.flatMap((h) => [h.loss, h.valLoss ?? 0]), 1e-6);
  const x = (epoch) => pad + ((epoch - 1) / Math.max(1, history.length - 1)) * (width - 2 * pad);
  const y = (value, top) => 8 + (1 - value / top) * (height - pad - 8);
  const line = (key, top, colour, dashed) => {
    const points = history.filter((h) => h[key] != null);
    if (!points.length) return;
    ctx.beginPath();
    ctx.setLineDash(dashed ? [5, 4] : []);
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    points.forEach((h, i) => (i ? ctx.lineTo(x(h.epoch), y(h[key], top)) : ctx.moveTo(x(h.epoch), y(h[key], top))));
    ctx.stroke();
  };
  line('loss', maxLoss, '#a14f14', false);
  line('valLoss', maxLoss, '#a14f14', true);
  line('accuracy', 1, '#2e7d32', false);
  line('valAccuracy', 1, '#2e7d32', true);
  ctx.setLineDash([]);
  ctx.fillStyle = '#7a6a60';
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillText('loss (brown), accuracy (green); dashed: validation', pad, height - 6);
}
