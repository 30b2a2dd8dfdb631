/**
 * The user's backend choice on a page: "auto" (measured, static/js/auto-backend.js) or one
 * of the backends of TF.js or ONNX Runtime Web. It comes from ?backend= (wins), else localStorage, else "auto", and
 * is remembered for the next visit. The worker activates it (static/js/backend.js).
 */
/**
 * The backends a page can run on, as data: the page kit (page-kit.js), the worker, "auto"
 * (auto-backend.js) and the backend <select> (fillBackendSelect) read this list, no page
 * names a backend in its code. `runtime` says which library runs it (RUNTIMES: TF.js, or ONNX
 * Runtime Web for models converted from ONNX); `device` what it computes on (the same device
 * under the other runtime is a backend's counterpart: counterpartOf); `auto` whether "auto"
 * measures it (never cpu, which wasm always beats).
 */
export const BACKEND_LIST = [
  { name: 'webgpu', runtime: 'tfjs', device: 'webgpu', label: 'TF.js · WebGPU', auto: true },
  { name: 'webgl', runtime: 'tfjs', device: 'webgl', label: 'TF.js · WebGL', auto: true },
  { name: 'wasm', runtime: 'tfjs', device: 'wasm', label: 'TF.js · WebAssembly', auto: true },
  { name: 'cpu', runtime: 'tfjs', device: 'cpu', label: 'TF.js · CPU (plain JavaScript)', auto: false },
  { name: 'ort-webgpu', runtime: 'ort', device: 'webgpu', label: 'ONNX Runtime · WebGPU', auto: true },
  { name: 'ort-wasm', runtime: 'ort', device: 'wasm', label: 'ONNX Runtime · WebAssembly', auto: true },
];
/** Each runtime's model format (the manifest's `formats` key it loads). */
export const RUNTIMES = {
  tfjs: { label: 'TF.js', format: 'graph' },
  ort: { label: 'ONNX Runtime Web', format: 'onnx' },
};
export const BACKENDS = BACKEND_LIST.map((backend) => backend.name);
const byName = new Map(BACKEND_LIST.map((backend) => [backend.name, backend]));

/** The BACKEND_LIST entry of `name`, or undefined. */
export function backendInfo(name) {
  return byName.get(name);
}

/**
 * The backends that can run a model with these formats (its manifest's `formats` keys, or the
 * page config's modelFiles.formats), in BACKEND_LIST's order; every backend when unknown.
 */
export function backendsFor(formats) {
  if (!formats) return BACKENDS;
  const have = new Set(Array.isArray(formats) ? formats : Object.keys(formats));
  return BACKEND_LIST.filter((backend) => have.has(RUNTIMES[backend.runtime].format)).map((b) => b.name);
}

/**
 * The backend to use for the user's `choice` when the model runs on `allowed` only: the
 * choice itself, else the same device under the other runtime (a remembered "wasm" on a
 * PyTorch model: "ort-wasm"), else "auto".
 */
export function counterpartOf(choice, allowed) {
  if (choice === 'auto' || allowed.includes(choice)) return choice;
  const device = byName.get(choice)?.device;
  return allowed.find((name) => byName.get(name).device === device) ?? 'auto';
}
export const CHOICES = ['auto', ...BACKENDS];
export const STORAGE_KEY = 'belka.backend';

/**
 * Fills a backend <select> after its "auto" option (written in the page's HTML,
 * app/templates/_backend_select.html) with the backends of BACKEND_LIST in `allowed` (those
 * that run the page's model), keeping its value.
 */
export function fillBackendSelect(select, allowed = BACKENDS) {
  const value = select.value;
  select.replaceChildren(select.querySelector('option[value="auto"]'),
    ...BACKEND_LIST.filter((backend) => allowed.includes(backend.name))
      .map((backend) => new Option(backend.label, backend.name)));
  if (value === 'auto' || allowed.includes(value)) select.value = value;
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

/** What a page says about an unknown ?backend= value: {title, text}. */
export function unknownBackendMessage(ignored, choice) {
  return {
    title: `Unknown backend "${ignored}" in the address.`,
    text: `Use ?backend= with one of ${CHOICES.join(', ')}. Using ${choice} meanwhile.`,
  };
}
