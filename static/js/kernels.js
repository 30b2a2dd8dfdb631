/**
 * Kernels for the convolution lesson (/learn/convolution, static/js/learn-convolution.js), in
 * plain JavaScript: the presets (3x3 and 5x5), normalising, padding, the output size and padding
 * TensorFlow uses, and the arithmetic of one output pixel. No TF.js here.
 *
 * A kernel is an array of k rows of k numbers (k odd). Like tf.conv2d (and every deep-learning
 * "convolution"), the kernel is not flipped: output(r, c) = sum over i, j of
 * kernel[i][j] * input(r * stride - top + i, c * stride - left + j), zeros outside the image.
 */

const gauss5 = [1, 4, 6, 4, 1];
const outer = (a, b, scale = 1) => a.map((x) => b.map((y) => x * y * scale));

/**
 * The presets: name -> {title, about, kernels: {3: rows, 5: rows}}. A preset without a 5x5
 * version of its own is its 3x3 kernel in the middle of zeros (padKernel).
 */
export const PRESETS = {
  identity: {
    title: 'Identity',
    about: 'One 1 in the middle: every pixel stays as it was.',
    kernels: {
      3: [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    },
  },
  'box-blur': {
    title: 'Box blur',
    about: 'The average of the neighbourhood: every weight is 1 / (number of cells).',
    kernels: {
      3: outer([1, 1, 1], [1, 1, 1], 1 / 9),
      5: outer([1, 1, 1, 1, 1], [1, 1, 1, 1, 1], 1 / 25),
    },
  },
  gaussian: {
    title: 'Gaussian blur',
    about: 'A weighted average: the nearer a neighbour, the more it counts. Softer than the box.',
    kernels: {
      3: outer([1, 2, 1], [1, 2, 1], 1 / 16),
      5: outer(gauss5, gauss5, 1 / 256),
    },
  },
  sharpen: {
    title: 'Sharpen',
    about: 'The pixel, plus how much it differs from its neighbours: differences get bigger.',
    kernels: {
      3: [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
      // unsharp masking: 2 x the pixel minus the 5x5 Gaussian blur
      5: outer(gauss5, gauss5, -1 / 256).map((row, i) => row.map((v, j) => (i === 2 && j === 2 ? 2 + v : v))),
    },
  },
  // The 5x5 Sobel kernels: the derivative -1 -2 0 2 1 one way, smoothed by 1 4 6 4 1 the other,
  // divided by 16 (the smoothing's sum) so that their outputs stay about as large as the 3x3's.
  // OpenCV's integer 5x5 Sobel is 16 times these: on a 0..1 photo its outputs reach 30 or more,
  // most of the picture is white, and float32 keeps those to about 4e-6 (one unit in the last
  // place at 32), so two correct implementations summing in different orders differ by ~1e-5.
  'sobel-x': {
    title: 'Edges: Sobel x',
    about: 'Right minus left: bright where the image gets brighter or darker from left to right (vertical edges).',
    kernels: {
      3: [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
      5: outer(gauss5, [-1, -2, 0, 2, 1], 1 / 16),
    },
  },
  'sobel-y': {
    title: 'Edges: Sobel y',
    about: 'Below minus above: horizontal edges.',
    kernels: {
      3: [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
      5: outer([-1, -2, 0, 2, 1], gauss5, 1 / 16),
    },
  },
  laplacian: {
    title: 'Edges: Laplacian',
    about: 'The neighbours minus the pixel: edges in every direction (the 5x5 is a Laplacian of Gaussian).',
    kernels: {
      3: [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
      5: [[0, 0, 1, 0, 0], [0, 1, 2, 1, 0], [1, 2, -16, 2, 1], [0, 1, 2, 1, 0], [0, 0, 1, 0, 0]],
    },
  },
  emboss: {
    title: 'Emboss',
    about: 'Bottom-right minus top-left, plus the pixel: the photo looks pressed into metal.',
    kernels: {
      3: [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    },
  },
};

export const SIZES = [3, 5];

/** The preset's names, in the order the page shows them. */
export function presetNames() {
  return Object.keys(PRESETS);
}

/** A fresh copy of preset `name` at `size` (3 or 5): its own kernel, or its 3x3 padded with zeros. */
export function presetKernel(name, size = 3) {
  const preset = PRESETS[name];
  if (!preset) throw new Error(`No preset "${name}": ${presetNames().join(', ')}.`);
  if (!SIZES.includes(size)) throw new Error(`Kernel size ${size}: 3 or 5.`);
  const own = preset.kernels[size];
  return own ? own.map((row) => row.slice()) : padKernel(preset.kernels[3], size);
}

/** Whether preset `name` has a kernel of its own at `size` (not the 3x3 padded with zeros). */
export function hasOwnSize(name, size) {
  return Boolean(PRESETS[name]?.kernels[size]);
}

/** `kernel` (k x k) as a size x size kernel: centred in zeros when growing, its centre when shrinking. */
export function padKernel(kernel, size) {
  const k = kernel.length;
  const offset = (k - size) / 2; // negative when growing
  return Array.from({ length: size }, (_, i) => Array.from({ length: size }, (__, j) => {
    const r = i + offset;
    const c = j + offset;
    return r >= 0 && r < k && c >= 0 && c < k ? kernel[r][c] : 0;
  }));
}

/** The sum of a kernel's weights. */
export function kernelSum(kernel) {
  return kernel.reduce((total, row) => total + row.reduce((s, v) => s + v, 0), 0);
}

/** Whether the weights add up to 0 (within rounding): an edge detector, whose output is shown as |value|. */
export function sumsToZero(kernel) {
  const scale = kernel.reduce((m, row) => Math.max(m, ...row.map(Math.abs)), 0);
  return Math.abs(kernelSum(kernel)) <= 1e-9 * Math.max(1, scale);
}

/** `kernel` divided by its sum, so its weights add up to 1 (brightness kept); null when the sum is 0. */
export function normaliseKernel(kernel) {
  if (sumsToZero(kernel)) return null;
  const sum = kernelSum(kernel);
  return kernel.map((row) => row.map((v) => v / sum));
}

/** Whether two kernels hold the same numbers. */
export function sameKernel(a, b) {
  return a.length === b.length && a.every((row, i) => row.every((v, j) => v === b[i][j]));
}

/** Which preset (and size) `kernel` is, or null. */
export function whichPreset(kernel) {
  for (const name of presetNames()) {
    if (sameKernel(kernel, presetKernel(name, kernel.length))) return name;
  }
  return null;
}

/**
 * Along one axis of `size` pixels, TensorFlow's output size and the padding before the first
 * pixel: 'same' gives ceil(size / stride) outputs, padding (k - 1) / 2 for stride 1 (half the
 * total, the odd one after); 'valid' gives ceil((size - k + 1) / stride) and no padding.
 */
export function axisGeometry(size, k, stride, padding) {
  if (padding === 'valid') return { out: Math.max(0, Math.ceil((size - k + 1) / stride)), before: 0 };
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + k - size, 0);
  return { out, before: Math.floor(total / 2) };
}

/** The output's [height, width] for an image of height x width pixels. */
export function outputSize(height, width, k, stride, padding) {
  return [axisGeometry(height, k, stride, padding).out, axisGeometry(width, k, stride, padding).out];
}

/**
 * The arithmetic of one output pixel. `image`: {data (row by row, `channels` values a pixel),
 * height, width, channels}: the values the convolution reads (the gray image, or the RGB one
 * with `channel` picking one); `output`: {shape [h, w, c], data} (its value is returned as
 * `output`, to compare with `sum`). Returns {row, col, channel, top, left (where the
 * neighbourhood starts in the input; negative in the padding), neighbourhood, kernel,
 * products (k x k each; null for cells outside the image, which count as 0), sum, output}.
 */
export function explainPixel(image, kernel, { row, col, channel = 0, stride = 1, padding = 'same', output = null }) {
  const k = kernel.length;
  const vertical = axisGeometry(image.height, k, stride, padding);
  const horizontal = axisGeometry(image.width, k, stride, padding);
  if (!(Number.isInteger(row) && row >= 0 && row < vertical.out && Number.isInteger(col) && col >= 0 &&
        col < horizontal.out)) {
    throw new Error(`Output pixel (${row}, ${col}) is outside the ${vertical.out} x ${horizontal.out} output.`);
  }
  if (!(Number.isInteger(channel) && channel >= 0 && channel < image.channels)) {
    throw new Error(`Channel ${channel}: the image has ${image.channels}.`);
  }
  const top = row * stride - vertical.before;
  const left = col * stride - horizontal.before;
  const neighbourhood = [];
  const products = [];
  let sum = 0;
  for (let i = 0; i < k; i += 1) {
    const values = [];
    const times = [];
    for (let j = 0; j < k; j += 1) {
      const r = top + i;
      const c = left + j;
      if (r < 0 || r >= image.height || c < 0 || c >= image.width) {
        values.push(null);
        times.push(null);
      } else {
        const value = image.data[(r * image.width + c) * image.channels + channel];
        values.push(value);
        times.push(value * kernel[i][j]);
        sum += value * kernel[i][j];
      }
    }
    neighbourhood.push(values);
    products.push(times);
  }
  let value = null;
  if (output) {
    const [, width, channels] = output.shape;
    value = output.data[(row * width + col) * channels + (channels > 1 ? channel : 0)];
  }
  return {
    row, col, channel, top, left, neighbourhood, kernel: kernel.map((r) => r.slice()), products, sum, output: value,
  };
}
