/**
 * Keras layers that TF.js 4.22 does not implement, written for it so that layers models
 * which use them load with tf.loadLayersModel. Registered once with
 * tf.serialization.registerClass by `registerLayers(tf)`: the pages call it (tf.js) and so
 * does the converter's check in Node (app/convert/tfjs_runner.mjs), so both run the same code.
 *
 * Normalization (keras.layers.Normalization, e.g. at the top of EfficientNet):
 *   y = (x - mean) / max(sqrt(variance), 1e-7), per channel (last axis), as Keras computes it;
 *   with invert: y = x * max(sqrt(variance), 1e-7) + mean. mean and variance come from the
 *   layer's config, or (a layer that was adapted) from its weights "mean", "variance", "count".
 *
 * No imports: `tf` is passed in, so the module works with the page's TF.js bundle and with
 * @tensorflow/tfjs in Node alike.
 */
const EPSILON = 1e-7; // Keras's backend.epsilon()

export function registerLayers(tf) {
  if (registerLayers.done?.has(tf)) return;

  class Normalization extends tf.layers.Layer {
    static className = 'Normalization';

    constructor(config) {
      super(config);
      this.axis = config.axis ?? -1;
      this.invert = Boolean(config.invert);
      this.meanValue = config.mean ?? null;
      this.varianceValue = config.variance ?? null;
    }

    build(inputShape) {
      const rank = inputShape.length;
      const axes = (Array.isArray(this.axis) ? this.axis : [this.axis]).map((a) => (a < 0 ? rank + a : a));
      if (axes.length !== 1 || axes[0] !== rank - 1) {
        throw new Error(`Normalization over axis ${JSON.stringify(this.axis)}: only the last (channel) axis is supported.`);
      }
      const channels = inputShape[rank - 1];
      if (this.meanValue == null) {
        this.meanWeight = this.addWeight('mean', [channels], 'float32', tf.initializers.zeros(), null, false);
        this.varianceWeight = this.addWeight('variance', [channels], 'float32', tf.initializers.ones(), null, false);
        this.countWeight = this.addWeight('count', [], 'int32', tf.initializers.zeros(), null, false);
      }
      this.built = true;
    }

    computeOutputShape(inputShape) {
      return inputShape;
    }

    call(inputs) {
      return tf.tidy(() => {
        const x = Array.isArray(inputs) ? inputs[0] : inputs;
        const mean = this.meanWeight ? this.meanWeight.read() : tf.reshape(tf.tensor(this.meanValue), [-1]);
        const variance = this.varianceWeight ? this.varianceWeight.read() : tf.reshape(tf.tensor(this.varianceValue), [-1]);
        const std = tf.maximum(tf.sqrt(variance), EPSILON);
        return this.invert ? tf.add(tf.mul(x, std), mean) : tf.div(tf.sub(x, mean), std);
      });
    }

    getConfig() {
      return { ...super.getConfig(), axis: this.axis, invert: this.invert, mean: this.meanValue, variance: this.varianceValue };
    }
  }

  tf.serialization.registerClass(Normalization);
  registerLayers.done = (registerLayers.done ?? new Set()).add(tf);
}
