// Runs ONNX models in the real ONNX Runtime Web (Node, its WebAssembly build: the pages' runtime
// for ONNX models where there is no GPU) so that `belka convert onnx` / `belka verify` can compare
// their numbers with onnxruntime in Python, as tfjs_runner.mjs does for the TF.js models.
//
// Usage: node ort_runner.mjs REQUEST.json
// REQUEST = {
//   "input":  {"path": "probe.bin", "shape": [N, C, H, W] or [N, H, W, C], "dtype": "float32"},
//   "models": [{"format": "onnx" | "onnx-float16", "path": "/abs/path/model.onnx",
//               "external_data": ["model.onnx.data", ...]}],  // optional: files beside it
//   "out_dir": "/abs/path",       // each model's output is written as <format>.bin
//   "batch": "whole" | "each"     // "each": one image at a time (a model with a fixed batch of 1)
// }
// The model's first input gets the images, its first output is written (float32).
// Prints one JSON line on stdout: {"ort_version", "backend": "wasm", "results": [...]}
// or {"error": "...", "operator": "..." (when ONNX Runtime Web lacks a kernel)} with exit code 1.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const ort = await import('onnxruntime-web');
ort.env.wasm.numThreads = 1; // Node: onnxruntime-web runs single-threaded there
ort.env.logLevel = 'error';

/** The operator a session creation failed on, when the message names one. */
function missingOperator(message) {
  const match = /Could not find an implementation for ([\w.:]+)\(/.exec(message)
    ?? /([\w.]+:[\w.]+)\(-?\d+\) is not a registered function\/op/.exec(message);
  return match ? match[1] : null;
}

async function run(request) {
  const raw = await readFile(request.input.path);
  const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const shape = request.input.shape;
  const results = [];
  for (const model of request.models) {
    const options = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
    if (model.external_data?.length) {
      options.externalData = await Promise.all(model.external_data.map(async (name) => ({
        path: name, data: await readFile(path.join(path.dirname(model.path), name)),
      })));
    }
    const started = performance.now();
    let session;
    try {
      session = await ort.InferenceSession.create(await readFile(model.path), options);
    } catch (error) {
      const message = String(error?.message ?? error);
      throw Object.assign(new Error(message), { operator: missingOperator(message) });
    }
    const loadMs = performance.now() - started;
    const inputName = session.inputNames[0];
    const outputName = session.outputNames[0];
    const images = request.batch === 'each' ? shape[0] : 1;
    const per = data.length / images;
    const rows = [];
    let outShape = null;
    for (let i = 0; i < images; i += 1) {
      const batchShape = request.batch === 'each' ? [1, ...shape.slice(1)] : shape;
      const tensor = new ort.Tensor('float32', data.subarray(i * per, (i + 1) * per), batchShape);
      const outputs = await session.run({ [inputName]: tensor }, [outputName]);
      const output = outputs[outputName];
      rows.push(Float32Array.from(output.data));
      outShape = output.dims;
      tensor.dispose?.();
      Object.values(outputs).forEach((t) => t.dispose?.());
    }
    await session.release();
    const values = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
    rows.reduce((offset, r) => { values.set(r, offset); return offset + r.length; }, 0);
    const out = path.join(request.out_dir, `${model.format}.bin`);
    await writeFile(out, Buffer.from(values.buffer));
    const fullShape = request.batch === 'each' ? [images, ...outShape.slice(1)] : [...outShape];
    results.push({ format: model.format, path: out, shape: fullShape, dtype: 'float32', load_ms: loadMs,
                   input: inputName, output: outputName });
  }
  return { ort_version: ort.env.versions?.web ?? null, backend: 'wasm', results };
}

try {
  const request = JSON.parse(await readFile(process.argv[2], 'utf8'));
  console.log(JSON.stringify(await run(request)));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error), operator: error?.operator ?? null }));
  process.exit(1);
}
