/**
 * Heatmaps as pictures, drawn the way the server draws its overlay PNG
 * (app/inference/heatmap_image.py): the [h, w] map in [0, 1] is resized bilinearly to the
 * picture (half-pixel centres: tf.image.resizeBilinear(x, size, false, true), in the
 * model's worker), coloured with the "jet" colormap (blue = 0, red = 1) and shown over the
 * picture; the opacity is the canvas's CSS opacity, so the slider needs no redraw.
 */

// "jet": [position, [r, g, b]]; linear in between (the server uses the same stops).
const JET = [[0, [0, 0, 128]], [0.125, [0, 0, 255]], [0.375, [0, 255, 255]], [0.625, [255, 255, 0]],
  [0.875, [255, 0, 0]], [1, [128, 0, 0]]];

/** The jet colour [r, g, b] (0..255) of a value in [0, 1]. */
export function jet(value) {
  const v = Math.min(1, Math.max(0, value));
  let k = 1;
  while (k < JET.length - 1 && JET[k][0] < v) k += 1;
  const [p0, c0] = JET[k - 1];
  const [p1, c1] = JET[k];
  const t = (v - p0) / (p1 - p0);
  return c0.map((c, i) => Math.round(c + t * (c1[i] - c)));
}

/**
 * Colours a heatmap already resized to width x height (values in [0, 1], row by row) with
 * jet: RGBA ImageData to draw over the picture. (The model's worker resizes and colours it,
 * static/js/engine.js "heatmapImage"; the page only puts the pixels on its canvas.)
 */
export function colourise(values, width, height) {
  const image = new ImageData(width, height);
  values.forEach((v, i) => {
    const [r, g, b] = JET_TABLE[Math.round(Math.min(1, Math.max(0, v)) * 255)];
    image.data.set([r, g, b, 255], i * 4);
  });
  return image;
}

// jet at 256 levels: a few hundred thousand pixels are coloured per heatmap.
const JET_TABLE = Array.from({ length: 256 }, (_, level) => jet(level / 255));

/** The raw heatmap as a greyscale PNG Blob at its own resolution (0 black, 1 white). */
export function heatmapPng(heatmap, shape) {
  const [height, width] = shape;
  const canvas = new OffscreenCanvas(width, height);
  const image = new ImageData(width, height);
  heatmap.forEach((v, i) => {
    const grey = Math.round(Math.min(1, Math.max(0, v)) * 255);
    image.data.set([grey, grey, grey, 255], i * 4);
  });
  canvas.getContext('2d').putImageData(image, 0, 0);
  return canvas.convertToBlob({ type: 'image/png' });
}
