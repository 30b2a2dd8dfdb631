/**
 * Which TF.js backend runs the model: the user's choice, remembered, and
 * activation with fallback.
 *
 * Choices: "auto" tries webgpu, webgl, wasm, cpu in that order and keeps the first
 * that initialises; a fixed choice tries that backend first and falls back in the
 * same order when it cannot start (tf.setBackend returned false, threw, or hung).
 * The choice comes from ?backend= (wins), else localStorage, else "auto".
 */
import { tf } from './tf.js';

export const BACKENDS = ['webgpu', 'webgl', 'wasm', 'cpu'];
export const CHOICES = ['auto', ...BACKENDS];
export const STORAGE_KEY = 'belka.backend';
const WASM_DIR = '/vendor/tfjs-backend-wasm/dist/';
const INIT_TIMEOUT_MS = 30000;

let wasmConfigured = false;

/**
 * Points the WASM backend at its binaries (served from npm under /vendor, no CDN).
 *
 * Threads stay off: TF.js's threaded WASM build starts its workers from blob: URLs,
 * which our CSP (worker-src falls back to script-src 'self') refuses, and then the
 * backend's initialisation never finishes. The single-threaded SIMD build needs
 * no workers. (To allow threads the server would need `worker-src 'self' blob:` and
 * blob: in script-src.)
 */
export function configureWasm() {
  if (wasmConfigured || !tf.wasm) return;
  tf.wasm.setWasmPaths(WASM_DIR);
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  wasmConfigured = true;
}

/**
 * The user's backend choice: {choice, source, ignored}. `source` is "url", "storage"
 * or "default"; `ignored` holds an unknown ?backend= value (shown to the user).
 */
export function initialChoice(search = window.location.search) {
  const fromUrl = new URLSearchParams(search).get('backend');
  if (fromUrl != null) {
    const value = fromUrl.trim().toLowerCase();
    if (CHOICES.includes(value)) return { choice: value, source: 'url', ignored: null };
    const stored = storedChoice();
    return { choice: stored ?? 'auto', source: stored ? 'storage' : 'default', ignored: fromUrl };
  }
  const stored = storedChoice();
  return stored ? { choice: stored, source: 'storage', ignored: null } : { choice: 'auto', source: 'default', ignored: null };
}

function storedChoice() {
  try {
    const value = window.localStorage.getItem(STORAGE_KEY);
    return CHOICES.includes(value) ? value : null;
  } catch {
    return null; // storage disabled (privacy settings): nothing remembered
  }
}

/** Remembers `choice` for the next visit (silently does nothing when storage is disabled). */
export function rememberChoice(choice) {
  try {
    window.localStorage.setItem(STORAGE_KEY, choice);
  } catch {
    /* storage disabled */
  }
}

/** The backends to try, in order, for a choice. */
export function candidatesFor(choice) {
  if (choice === 'auto') return BACKENDS;
  return [choice, ...BACKENDS.filter((b) => b !== choice)];
}

/**
 * Activates the backend for `choice`, falling back as needed. Resolves to
 * {backend, choice, failures: [{backend, reason}]}; throws when none starts.
 */
export async function activateBackend(choice) {
  configureWasm();
  const failures = [];
  for (const name of candidatesFor(choice)) {
    const reason = await trySetBackend(name);
    if (reason == null) return { backend: name, choice, failures };
    failures.push({ backend: name, reason });
  }
  const details = failures.map((f) => `${f.backend}: ${f.reason}`).join('; ');
  throw new Error(`No TF.js backend could start (${details}).`);
}

/** null when `name` is now the active backend, else why it is not. */
async function trySetBackend(name) {
  if (tf.getBackend() === name) return null;
  if (!(name in tf.engine().registryFactory)) {
    return name === 'webgpu' && !navigator.gpu
      ? 'this browser has no WebGPU (navigator.gpu is missing)'
      : 'not available in this browser';
  }
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), INIT_TIMEOUT_MS);
  });
  try {
    const ok = await Promise.race([tf.setBackend(name), timeout]);
    if (ok === 'timeout') return `did not start within ${INIT_TIMEOUT_MS / 1000} s`;
    if (!ok) return 'failed to initialise (no suitable GPU adapter or context?)';
    await tf.ready();
    return null;
  } catch (error) {
    return error?.message ?? String(error);
  } finally {
    clearTimeout(timer);
  }
}
