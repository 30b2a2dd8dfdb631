// Runs converted models in the real TF.js runtime (Node) so that `belka convert` /
// `belka verify` can compare their numbers with TensorFlow. It runs them on the wasm
// backend, the pages' default where there is no GPU, which is also stricter than the cpu
// backend about the shapes of fused ops (a model that runs on wasm runs on cpu and webgl);
// "backend": "cpu" in the request picks the pure-JS backend instead.
//
// Usage: node tfjs_runner.mjs REQUEST.json
// REQUEST = {
//   "input":  {"path": "probe.bin", "shape": [N, H, W, C], "dtype": "float32"},
//   "models": [{"format": "graph" | "graph-float16" | "layers", "dir": "/abs/path/graph",
//               "outputs": ["Identity:0", ...],     // optional, graph models only
//               "output": "output",   // a graph model's output to run when it has several (default "output")
//               "execute": "execute" | "executeAsync"}],  // with outputs: how to run
//   "out_dir": "/abs/path",       // outputs are written as <format>.bin
//   "backend": "wasm" | "cpu"     // optional, default "wasm"
// }
// Without "outputs" the model must have one output, run on the whole batch. With
// "outputs" (a detector: boxes and scores) each image of the batch runs alone (such
// models take a batch of one) through execute() or executeAsync(), as the page will run
// it, and each named output is written as <format>-<k>.bin, the images' rows concatenated.
// Prints one JSON line on stdout: {"tfjs_version", "backend", "results": [...]}
// or {"error": "..."} with exit code 1.
//
// Files are read straight from disk with a small IOHandler, so this needs only
// @tensorflow/tfjs (no tfjs-node native binary, no HTTP server).
import { createRequire } from 'node:module';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const require = createRequire(import.meta.url);

// TF.js prints a hint about tfjs-node when it starts in Node; it is not an error.
const consoleWarn = console.warn;
console.warn = () => {};
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');
console.warn = consoleWarn;
// The Keras layers TF.js lacks, registered as the pages register them (static/js/custom-layers.js).
const { registerLayers } = await import('../../static/js/custom-layers.js');
registerLayers(tf);

/** An IOHandler that loads model.json and its weight shards from a folder. */
function fileHandler(dir) {
  return {
    async load() {
      const modelJSON = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const buffers = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const b = await readFile(path.join(dir, p));
            buffers.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
          }
        }
        return [specs, tf.io.concatenateArrayBuffers(buffers)];
      });
    },
  };
}

const ARRAYS = { float32: Float32Array, int32: Int32Array };

async function readInput({ path: file, shape, dtype }) {
  const Arr = ARRAYS[dtype];
  if (!Arr) throw new Error(`unsupported input dtype ${dtype}`);
  const b = await readFile(file);
  const values = new Arr(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  return tf.tensor(values, shape, dtype);
}

async function writeTensor(tensor, file) {
  const values = await tensor.data();
  await writeFile(file, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
}

/** Runs each image of `input` alone through a graph model's named `outputs`. */
async function runNamedOutputs(model, input, outputs, execute, format, outDir) {
  const rows = outputs.map(() => []);
  for (let i = 0; i < input.shape[0]; i += 1) {
    const image = tf.slice(input, [i], [1]);
    const results = execute === 'execute'
      ? model.execute(image, outputs) : await model.executeAsync(image, outputs);
    image.dispose();
    (Array.isArray(results) ? results : [results]).forEach((t, k) => rows[k].push(t));
  }
  const written = [];
  for (let k = 0; k < outputs.length; k += 1) {
    const joined = tf.concat(rows[k], 0);
    const file = path.join(outDir, `${format}-${k}.bin`);
    await writeTensor(joined, file);
    written.push({ name: outputs[k], file, shape: joined.shape, dtype: joined.dtype });
    tf.dispose([joined, ...rows[k]]);
  }
  return written;
}

async function runModel({ format, dir, outputs, execute, output: outputKey }, input, outDir) {
  let t0 = performance.now();
  const model = format.startsWith('graph') // graph, graph-float16
    ? await tf.loadGraphModel(fileHandler(dir))
    : await tf.loadLayersModel(fileHandler(dir));
  const loadMs = performance.now() - t0;
  t0 = performance.now();
  if (outputs) {
    const written = await runNamedOutputs(model, input, outputs, execute, format, outDir);
    model.dispose();
    return { format, outputs: written, load_ms: loadMs, predict_ms: performance.now() - t0 };
  }
  // a graph model with Grad-CAM features has two outputs: run only the one the page shows
  const output = format.startsWith('graph') && model.outputs.length > 1
    ? model.execute(input, outputKey ?? 'output') : model.predict(input);
  if (Array.isArray(output) || !(output instanceof tf.Tensor)) {
    tf.dispose(output);
    model.dispose();
    throw new Error(`${format} model has several outputs; Belka expects one`);
  }
  const values = await output.data();
  const predictMs = performance.now() - t0;
  const file = path.join(outDir, `${format}.bin`);
  await writeFile(file, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
  const result = { format, file, shape: output.shape, dtype: output.dtype, load_ms: loadMs, predict_ms: predictMs };
  output.dispose();
  model.dispose();
  return result;
}

async function main() {
  const request = JSON.parse(await readFile(process.argv[2], 'utf8'));
  const backend = request.backend ?? 'wasm';
  if (!(await tf.setBackend(backend))) throw new Error(`the TF.js ${backend} backend did not start`);
  await tf.ready();
  const input = await readInput(request.input);
  const results = [];
  for (const m of request.models) results.push(await runModel(m, input, request.out_dir));
  input.dispose();
  process.stdout.write(JSON.stringify({
    tfjs_version: tf.version.tfjs, backend: tf.getBackend(), num_tensors: tf.memory().numTensors, results,
  }) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.message ? err.message : err) }) + '\n');
  process.exit(1);
});
