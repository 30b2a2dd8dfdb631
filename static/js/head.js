/**
 * A small classification head trained in TF.js on a converted classifier's features (the
 * manifest's `features`), in the model's worker: what the /teach page teaches (issue 14).
 *
 * One Dense layer from the features to the classes (logits; softmax in the loss and the
 * readers), or a hidden ReLU layer first. Everything random comes from one seeded generator
 * (the weights' Glorot-uniform start, the validation split, each epoch's order), so the same
 * samples and settings train the same head. Adam on the softmax cross-entropy, in mini-batches;
 * after each epoch the loss and accuracy on the training and the validation samples.
 *
 * The weights leave as TF.js saves them (`weightSpecs`: kernel then bias per layer, and their
 * float32 values): what POST /api/models builds the server's model from (app/teach.py).
 */
import { seededRandom } from './random.js';
import { tf, withGradients } from './tf.js';

function shuffled(items, random) {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * The samples' indices split per class (each class keeps at least one training sample and,
 * when it has two or more, gives at least one to validation when `fraction` > 0): {train, val}.
 */
export function stratifiedSplit(labels, classes, fraction, random) {
  const train = [];
  const val = [];
  for (let c = 0; c < classes; c += 1) {
    const mine = shuffled(labels.flatMap((label, i) => (label === c ? [i] : [])), random);
    let take = Math.round(mine.length * fraction);
    if (fraction > 0 && mine.length >= 2) take = Math.max(1, take);
    take = Math.min(take, mine.length - 1);
    val.push(...mine.slice(0, Math.max(0, take)));
    train.push(...mine.slice(Math.max(0, take)));
  }
  return { train: train.sort((a, b) => a - b), val: val.sort((a, b) => a - b) };
}

/** A variable holding `tensor`'s values (the tensor itself disposed: no leftover). */
function variableOf(tensor) {
  const variable = tf.variable(tensor);
  tensor.dispose();
  return variable;
}

function glorot(fanIn, fanOut, random) {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  return Float32Array.from({ length: fanIn * fanOut }, () => (2 * random() - 1) * limit);
}

export class Head {
  /** `layers`: [{kernel: tf.Variable [in, out], bias: tf.Variable [out]}]. */
  constructor(layers) {
    this.layers = layers;
  }

  static init(features, classes, hidden, random) {
    const widths = [features, ...(hidden > 0 ? [hidden] : []), classes];
    const layers = widths.slice(1).map((out, i) => ({
      kernel: variableOf(tf.tensor2d(glorot(widths[i], out, random), [widths[i], out])),
      bias: variableOf(tf.zeros([out])),
    }));
    return new Head(layers);
  }

  /** Logits [N, classes] for features [N, size] (call inside tf.tidy). */
  logits(x) {
    return this.layers.reduce((h, { kernel, bias }, i) => {
      const y = tf.add(tf.matMul(h, kernel), bias);
      return i < this.layers.length - 1 ? tf.relu(y) : y;
    }, x);
  }

  /** A head from its saved weights ({weightSpecs, data}, as `weights()` gives them). */
  static fromWeights({ weightSpecs, data }) {
    if (!Array.isArray(weightSpecs) || weightSpecs.length % 2) throw new Error('A head needs a kernel and a bias per layer.');
    const values = data instanceof Float32Array ? data : new Float32Array(data);
    let offset = 0;
    const take = ({ shape }) => {
      const size = shape.reduce((a, b) => a * b, 1);
      if (offset + size > values.length) throw new Error('The saved head is missing weights.');
      const tensor = tf.tensor(values.subarray(offset, offset + size), shape);
      offset += size;
      return variableOf(tensor);
    };
    const layers = [];
    for (let i = 0; i < weightSpecs.length; i += 2) layers.push({ kernel: take(weightSpecs[i]), bias: take(weightSpecs[i + 1]) });
    return new Head(layers);
  }

  variables() {
    return this.layers.flatMap(({ kernel, bias }) => [kernel, bias]);
  }

  /** {weightSpecs, data: Float32Array}: TF.js's save format, kernel then bias per layer. */
  async weights() {
    const specs = [];
    const parts = [];
    for (const [i, { kernel, bias }] of this.layers.entries()) {
      const name = i < this.layers.length - 1 ? `taught_hidden_${i + 1}` : 'taught_logits';
      specs.push({ name: `${name}/kernel`, shape: kernel.shape, dtype: 'float32' },
        { name: `${name}/bias`, shape: bias.shape, dtype: 'float32' });
      parts.push(await kernel.data(), await bias.data());
    }
    const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      data.set(part, offset);
      offset += part.length;
    }
    return { weightSpecs: specs, data };
  }

  dispose() {
    tf.dispose(this.variables());
  }
}

function lossAndAccuracy(head, x, y) {
  return tf.tidy(() => {
    const logits = head.logits(x);
    const loss = tf.losses.softmaxCrossEntropy(y, logits);
    const right = tf.mean(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(y, 1)), 'float32'));
    return [loss, right];
  });
}

async function measure(head, x, y) {
  if (!x) return { loss: null, accuracy: null };
  const [loss, accuracy] = lossAndAccuracy(head, x, y);
  const values = { loss: (await loss.data())[0], accuracy: (await accuracy.data())[0] };
  tf.dispose([loss, accuracy]);
  return values;
}

/**
 * `count` augmented views of a model input x [1, H, W, 3] made with preprocessing `spec`, each a
 * random mix of: a horizontal flip (half the time), a crop of 80-100% of each side at a random
 * place resized back, and a brightness shift of up to 20% of the pixel range (in the model's
 * units: times (hi - lo) / 255, over the spec's std). `random`: a seeded generator
 * (seededRandom). [count, H, W, 3]; call inside tf.tidy.
 */
export function augmentedViews(x, count, spec, random) {
  const [, height, width] = x.shape;
  const [lo, hi] = spec.value_range;
  const std = tf.tensor1d(spec.std ?? [1, 1, 1], 'float32');
  const views = [];
  for (let i = 0; i < count; i += 1) {
    let view = random() < 0.5 ? tf.reverse(x, 2) : x;
    const side = 0.8 + 0.2 * random();
    const top = (1 - side) * random();
    const left = (1 - side) * random();
    view = tf.image.cropAndResize(view, [[top, left, top + side, left + side]], [0], [height, width], 'bilinear');
    const pixels = (random() - 0.5) * 0.4 * 255;
    views.push(tf.add(view, tf.div(tf.scalar((pixels * (hi - lo)) / 255), std)));
  }
  return tf.concat(views, 0);
}

const nextTask = () => new Promise((resolve) => { setTimeout(resolve, 0); });

/**
 * Trains a head. `features`: Float32Array [N * size]; `labels`: class index per sample.
 * Options: classes, size, hidden (0: none), epochs, learningRate, batchSize, validationSplit,
 * seed, views (augmented views' features {features, of}: training rows for the training samples
 * they came from); `signal` stops it between batches (AbortError); `onEpoch({epoch, loss, accuracy,
 * valLoss, valAccuracy})`. Resolves to {head, history, split: {train, val}, trainingRows (the
 * training samples and their views)}.
 */
export async function trainHead({ features, labels, classes, size, hidden = 0, epochs = 20, learningRate = 0.001,
  batchSize = 16, validationSplit = 0.2, seed = 0, views = null }, { signal, onEpoch = () => {} } = {}) {
  const count = labels.length;
  if (!count || features.length !== count * size) throw new Error('Every sample needs its features.');
  await withGradients();
  const present = new Set(labels);
  if (present.size < 2) throw new Error('Teach at least two classes, with a picture or more each.');
  const random = seededRandom(seed);
  const split = stratifiedSplit(labels, classes, validationSplit, random);
  const head = Head.init(size, classes, hidden, random);
  const optimizer = tf.train.adam(learningRate);
  const rows = (indices) => (indices.length ? tf.tidy(() => tf.gather(tf.tensor2d(features, [count, size]),
    tf.tensor1d(indices, 'int32'))) : null);
  const hot = (indices) => (indices.length ? tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(indices.map((i) => labels[i]),
    'int32'), classes), 'float32')) : null);
  // augmented views ({features: [M * size], of: [M] sample index}) of the training samples only:
  // a validation picture's views would be its own answer
  const inTrain = new Set(split.train);
  const extra = views ? [...views.of.keys()].filter((k) => inTrain.has(views.of[k])) : [];
  const trainX = tf.tidy(() => {
    const own = rows(split.train);
    if (!extra.length) return own;
    const more = tf.gather(tf.tensor2d(views.features, [views.of.length, size]), tf.tensor1d(extra, 'int32'));
    return tf.concat([own, more], 0);
  });
  const trainY = tf.tidy(() => {
    const own = hot(split.train);
    if (!extra.length) return own;
    const more = tf.oneHot(tf.tensor1d(extra.map((k) => labels[views.of[k]]), 'int32'), classes);
    return tf.concat([own, tf.cast(more, 'float32')], 0);
  });
  const valX = rows(split.val);
  const valY = hot(split.val);
  const history = [];
  try {
    for (let epoch = 1; epoch <= epochs; epoch += 1) {
      const order = shuffled([...Array(split.train.length + extra.length).keys()], random);
      for (let start = 0; start < order.length; start += batchSize) {
        if (signal?.aborted) {
          const error = new Error('Training stopped.');
          error.name = 'AbortError';
          throw error;
        }
        const batch = order.slice(start, start + batchSize);
        tf.tidy(() => {
          const picked = tf.tensor1d(batch, 'int32');
          const x = tf.gather(trainX, picked);
          const y = tf.gather(trainY, picked);
          optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, head.logits(x)), false, head.variables());
        });
      }
      const trained = await measure(head, trainX, trainY);
      const validated = await measure(head, valX, valY);
      const entry = { epoch, loss: trained.loss, accuracy: trained.accuracy,
        valLoss: validated.loss, valAccuracy: validated.accuracy };
      history.push(entry);
      onEpoch(entry);
      await nextTask(); // a Stop request gets its turn
    }
    return { head, history, split, trainingRows: trainX.shape[0] };
  } catch (error) {
    head.dispose();
    throw error;
  } finally {
    tf.dispose([trainX, trainY, valX, valY].filter(Boolean));
    optimizer.dispose();
  }
}
