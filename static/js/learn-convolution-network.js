/**
 * The convolution page's second lesson (learn-convolution.js says how its files fit together):
 * the site's classifier loaded on the page, its first convolution found in the graph (and what
 * is fused into it), its filters drawn, and the feature maps they make of the photo. Every
 * tensor made here is tidied or disposed.
 */
import { tf } from './lesson.js';
import { weightsFromUrl } from './manifest.js';
import { toModelInput } from './model-input.js';
import { Classifier } from './model.js';
import { clearMessage, showMessage } from './view.js';
import { $, config, putImage, state, toImageData } from './learn-convolution-photo.js';
import { settled } from './learn-convolution-kernel.js';

// ---------------------------------------------------------------- the network's first layer

export let network = null; // Promise: {classifier, node, op, fused, filterShape, filterData}
export let networkDrawn = Promise.resolve(null);

/** The graph's first convolution: breadth first from its inputs, the first Conv2D / _FusedConv2D node. */
export function firstConvolution(graph) {
  const nodes = graph.artifacts.modelTopology.node;
  const base = (name) => name.replace(/^\^/, '').replace(/:\d+$/, '');
  const consumers = new Map();
  for (const node of nodes) {
    for (const input of node.input ?? []) {
      const from = base(input);
      if (!consumers.has(from)) consumers.set(from, []);
      consumers.get(from).push(node);
    }
  }
  const queue = nodes.filter((node) => node.op === 'Placeholder');
  const seen = new Set(queue.map((node) => node.name));
  while (queue.length) {
    const node = queue.shift();
    if (node.op === 'Conv2D' || node.op === '_FusedConv2D') return node;
    for (const next of consumers.get(node.name) ?? []) {
      if (!seen.has(next.name)) {
        seen.add(next.name);
        queue.push(next);
      }
    }
  }
  throw new Error('The model has no Conv2D node.');
}

export function fusedOps(node) {
  const list = node.attr?.fused_ops?.list?.s ?? [];
  return list.map((s) => {
    try {
      return atob(s);
    } catch {
      return s;
    }
  });
}

export function loadNetwork() {
  network ??= (async () => {
    const classifier = await Classifier.load(config.model, { weights: weightsFromUrl() });
    const node = firstConvolution(classifier.graph);
    const weightName = node.input[1].replace(/^\^/, '').replace(/:\d+$/, '');
    const weight = classifier.graph.weights[weightName]?.[0];
    if (!weight || weight.rank !== 4) {
      throw new Error(`The first convolution's filter ${weightName} is not in the model's weights.`);
    }
    const filterData = await weight.data(); // the model's own tensor: not disposed here
    return { classifier, node, op: node.op, fused: fusedOps(node), filterShape: weight.shape, filterData };
  })();
  return network;
}

export function drawNetwork() {
  if (!config.model || !state.image) return networkDrawn;
  const image = state.image;
  networkDrawn = networkDrawn.catch(() => null).then(async () => {
    if (image !== state.image) return null; // a newer photo's turn
    try {
      const result = await drawFirstLayer(await loadNetwork(), image);
      clearMessage('network');
      return result;
    } catch (error) {
      $('network-status').textContent = `The network's first layer could not be shown: ${error.message}`;
      showMessage('network', 'warning', 'The network part did not load.', error.message);
      return null;
    }
  });
  return networkDrawn;
}

export async function drawFirstLayer(net, image) {
  const { classifier, node, filterShape, filterData } = net;
  const maps = tf.tidy(() => classifier.graph.execute(toModelInput(image.bitmap, classifier.preprocessing), node.name));
  let data;
  try {
    data = await maps.data();
  } finally {
    maps.dispose();
  }
  const [, mh, mw, count] = maps.shape;
  const [kh, kw, inChannels, filters] = filterShape;
  const grid = $('filters');
  grid.replaceChildren();
  for (let f = 0; f < filters; f += 1) {
    const figure = document.createElement('figure');
    figure.className = 'filter-item';
    figure.append(filterCanvas(filterData, filterShape, f), mapCanvas(data, mh, mw, count, f));
    const caption = document.createElement('figcaption');
    caption.textContent = String(f + 1);
    figure.append(caption);
    grid.append(figure);
  }
  const [size] = classifier.preprocessing.size;
  const steps = [node.op === '_FusedConv2D' ? 'Conv2D' : node.op, ...net.fused.filter((op) => op !== 'Conv2D')];
  $('network-status').textContent = `${filters} filters of ${kh} × ${kw} × ${inChannels} (left of each pair) and ` +
    `their ${mh} × ${mw} feature maps (right) on the photo as the network sees it (${size} × ${size}, centre ` +
    `crop). Node ${node.name}: ${steps.join(' + ')}` +
    (steps.length > 1 ? ', so the maps are after the layer\'s bias and activation (negatives become 0)' : '') +
    '. Each map is stretched to its own range: white is its largest value.' +
    (classifier.manifest.weights?.trained === false ? ' This model\'s weights are untrained (random), so its ' +
      'filters are noise, not the edge and colour detectors a trained network learns.' : '');
  return {
    filters, maps: count, node: node.name, op: node.op, filterShape: [...filterShape], mapShape: [mh, mw, count],
  };
}

/** Filter f of a [kh, kw, 3, F] weight as a tiny RGB image, its weights stretched to 0..1. */
export function filterCanvas(data, [kh, kw, channels, filters], f) {
  const values = [];
  for (let i = 0; i < kh * kw * channels; i += 1) values.push(data[i * filters + f]);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const scaled = values.map((v) => (hi > lo ? (v - lo) / (hi - lo) : 0.5));
  const canvas = document.createElement('canvas');
  canvas.className = 'filter-canvas';
  canvas.setAttribute('aria-label', `Filter ${f + 1}`);
  putImage(canvas, toImageData(scaled, kw, kh, channels === 3 ? 3 : 1));
  canvas.title = `Filter ${f + 1}: weights from ${lo.toFixed(3)} to ${hi.toFixed(3)}`;
  return canvas;
}

/** Channel f of a [h, w, count] feature map as a grayscale image, stretched to its own range. */
export function mapCanvas(data, h, w, count, f) {
  const values = new Float32Array(h * w);
  let lo = Infinity;
  let hi = -Infinity;
  for (let p = 0; p < h * w; p += 1) {
    const v = data[p * count + f];
    values[p] = v;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  for (let p = 0; p < h * w; p += 1) values[p] = hi > lo ? (values[p] - lo) / (hi - lo) : 0;
  const canvas = document.createElement('canvas');
  canvas.className = 'map-canvas';
  canvas.setAttribute('aria-label', `Feature map ${f + 1}`);
  canvas.title = `Feature map ${f + 1}: values from ${lo.toFixed(3)} to ${hi.toFixed(3)}`;
  putImage(canvas, toImageData(values, w, h, 1));
  return canvas;
}

export async function firstLayer() {
  if (!config.model) return null;
  await settled();
  return networkDrawn;
}
