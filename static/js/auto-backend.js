/**
 * An honest "auto": the backend that is fastest for this model on this device, measured,
 * not a fixed order.
 *
 * 1. Known signals first, at no cost: a GPU backend whose GPU is software (SwiftShader,
 *    llvmpipe, WARP...) is left out without a probe: on such machines WebGL runs
 *    MobileNetV2 in ~950 ms with 4-6 s of warm-up, against ~50 ms on WebAssembly, and
 *    learning that by trying costs the seconds we want to save.
 * 2. Then a probe of the real model on every backend left (never cpu, which wasm always
 *    beats): one warm-up call, then PROBE_RUNS timed calls; the smallest median wins.
 * 3. The choice is remembered per device and model (localStorage, keyed by the model's
 *    name and hash and the GPU's name), so the next visit starts on it at once; a
 *    re-converted model or another GPU is probed again.
 *
 * Every step leaves a reason, for the page to say why: "wasm: 27 ms; webgl: not tried
 * (software GPU: SwiftShader)".
 */
import { BACKEND_LIST } from './backend-choice.js';

const STORAGE_PREFIX = 'belka.auto.';
export const PROBE_RUNS = 3;
// the backends measured, in this order (BACKEND_LIST's `auto`)
export const AUTO_CANDIDATES = BACKEND_LIST.filter((backend) => backend.auto).map((backend) => backend.name);
const SOFTWARE_GPU = /swiftshader|llvmpipe|softpipe|lavapipe|software|basic render|\bwarp\b|fallback/i;

/** Whether a GPU description (a renderer or adapter name) names a software rasteriser. */
export function isSoftwareGpu(description) {
  return Boolean(description) && SOFTWARE_GPU.test(description);
}

/** The WebGL renderer's name ("ANGLE (..., SwiftShader ...)"), or null when there is no WebGL. */
export function webglRenderer() {
  try {
    const canvas = typeof OffscreenCanvas === 'function'
      ? new OffscreenCanvas(1, 1) : document.createElement('canvas');
    const gl = canvas.getContext('webgl2') || canvas.getContext('webgl');
    if (!gl) return null;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const name = gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER);
    gl.getExtension('WEBGL_lose_context')?.loseContext();
    return String(name);
  } catch {
    return null;
  }
}

/** The WebGPU adapter: {name, software} or null when there is none. */
export async function webgpuAdapter() {
  if (!globalThis.navigator?.gpu) return null;
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return null;
    const info = adapter.info ?? {};
    const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
    const software = Boolean(adapter.isFallbackAdapter || info.isFallbackAdapter) || isSoftwareGpu(name);
    return { name: name || 'unknown adapter', software };
  } catch {
    return null;
  }
}

/**
 * The backends worth probing among `allowed` (those that run the model), and why the others
 * are not: {candidates, skipped: [{backend, reason}], gpu} where gpu names the device's GPU
 * (part of the memory key). A GPU backend's device is checked once for both runtimes.
 */
export async function autoCandidates(allowed = AUTO_CANDIDATES) {
  const skipped = [];
  const candidates = [];
  const renderer = webglRenderer();
  const adapter = await webgpuAdapter();
  const problems = {
    webgpu: !adapter ? 'no WebGPU adapter' : adapter.software ? `software GPU (${adapter.name})` : null,
    webgl: !renderer ? 'no WebGL' : isSoftwareGpu(renderer) ? `software GPU (${shortGpu(renderer)})` : null,
    wasm: null,
  };
  for (const { name, device } of BACKEND_LIST.filter((b) => b.auto && allowed.includes(b.name))) {
    if (problems[device]) skipped.push({ backend: name, reason: problems[device] });
    else candidates.push(name);
  }
  return { candidates, skipped, gpu: renderer ?? adapter?.name ?? 'no GPU' };
}

/** "SwiftShader" out of "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) ...), SwiftShader driver)". */
function shortGpu(renderer) {
  const match = renderer.match(SOFTWARE_GPU);
  return match ? match[0].replace(/^./, (c) => c.toUpperCase()) : renderer;
}

/**
 * Times the model on each candidate, with `measure(backend)` resolving to the median ms of
 * PROBE_RUNS calls after a warm-up (or throwing when it cannot run there). Resolves to
 * {backend, measured: [{backend, ms} | {backend, reason}]}; throws when none ran.
 */
export async function probe(candidates, measure) {
  const measured = [];
  for (const backend of candidates) {
    try {
      measured.push({ backend, ms: await measure(backend) });
    } catch (error) {
      measured.push({ backend, reason: error?.message ?? String(error) });
    }
  }
  const ran = measured.filter((m) => Number.isFinite(m.ms));
  if (!ran.length) throw new Error(`the model ran on no backend (${describe(measured)})`);
  const best = ran.reduce((a, b) => (b.ms < a.ms ? b : a));
  return { backend: best.backend, measured };
}

/** The median ms of PROBE_RUNS calls of `run` (each resolving to its own ms). */
export async function medianMs(run, runs = PROBE_RUNS) {
  const samples = [];
  for (let i = 0; i < runs; i += 1) samples.push(await run());
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
}

/** "wasm: 27 ms; webgl: 950 ms; webgpu: not tried (software GPU (SwiftShader))". */
export function describe(entries) {
  return entries.map((e) => (Number.isFinite(e.ms) ? `${e.backend}: ${formatProbeMs(e.ms)}`
    : `${e.backend}: ${e.skipped ? 'not tried' : 'failed'} (${e.reason})`)).join('; ');
}

function formatProbeMs(ms) {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** The memory key for a model (name and content hash) on this device's GPU. */
export function memoryKey(model, modelHash, gpu) {
  return `${STORAGE_PREFIX}${model}@${(modelHash ?? '').slice(0, 16)}|${gpu}`;
}

/** The remembered choice {backend, why, at} for `key`, or null. */
export function recall(key, storage = globalThis.localStorage) {
  try {
    const value = JSON.parse(storage?.getItem(key) ?? 'null');
    return value && AUTO_CANDIDATES.includes(value.backend) ? value : null;
  } catch {
    return null; // storage disabled or garbled: probe again
  }
}

/** Remembers `choice` ({backend, why}) under `key` (silently nothing when storage is disabled). */
export function remember(key, choice, storage = globalThis.localStorage) {
  try {
    storage?.setItem(key, JSON.stringify({ ...choice, at: new Date().toISOString() }));
  } catch {
    /* storage disabled or full */
  }
}

/** The model's content hash for the memory key: its graph model.json's (or ONNX model's) sha256. */
export function modelHash(manifest) {
  const file = manifest.files?.find((f) => f.path === 'graph/model.json')
    ?? manifest.files?.find((f) => f.path === 'onnx/model.onnx');
  return file?.sha256 ?? manifest.created_at ?? '';
}

/**
 * Picks the backend for "auto" among `allowed`: remembered, or the only candidate, or probed with
 * `measure(backend)` (see `probe`). Resolves to {backend, why, source: "remembered" |
 * "only" | "probe"}; `why` is the sentence the page shows. (`detect` and `storage` are
 * there for tests.)
 */
export async function pickAuto({ model, manifest, measure, allowed = AUTO_CANDIDATES,
  storage = globalThis.localStorage, detect = autoCandidates }) {
  const { candidates, skipped, gpu } = await detect(allowed);
  const notTried = skipped.map((s) => ({ ...s, skipped: true }));
  const key = memoryKey(model, modelHash(manifest), gpu);
  const known = recall(key, storage);
  if (known && candidates.includes(known.backend)) {
    return { backend: known.backend, why: `${known.why} (measured ${known.at?.slice(0, 10) ?? 'earlier'})`, source: 'remembered' };
  }
  if (candidates.length === 1) {
    return { backend: candidates[0], why: describe(notTried), source: 'only' };
  }
  const { backend, measured } = await probe(candidates, measure);
  const why = describe([...measured, ...notTried]);
  remember(key, { backend, why }, storage);
  return { backend, why, source: 'probe' };
}
