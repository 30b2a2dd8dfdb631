/**
 * The user's backend choice on a page: "auto" (measured, static/js/auto-backend.js) or one
 * of TF.js's backends. It comes from ?backend= (wins), else localStorage, else "auto", and
 * is remembered for the next visit. The worker activates it (static/js/backend.js).
 */
/**
 * The backends a page can run on, as data: the page kit (page-kit.js), the worker, "auto"
 * (auto-backend.js) and the backend <select> (fillBackendSelect) read this list, no page
 * names a backend in its code. `runtime` says which library runs it (TF.js now; a second
 * runtime's backends go in this list beside them); `auto` whether "auto" measures it (never
 * cpu, which wasm always beats).
 */
export const BACKEND_LIST = [
  { name: 'webgpu', runtime: 'tfjs', label: 'WebGPU', auto: true },
  { name: 'webgl', runtime: 'tfjs', label: 'WebGL', auto: true },
  { name: 'wasm', runtime: 'tfjs', label: 'WebAssembly', auto: true },
  { name: 'cpu', runtime: 'tfjs', label: 'CPU (plain JavaScript)', auto: false },
];
export const BACKENDS = BACKEND_LIST.map((backend) => backend.name);
export const CHOICES = ['auto', ...BACKENDS];
export const STORAGE_KEY = 'belka.backend';

/**
 * Fills a backend <select> after its "auto" option (written in the page's HTML,
 * app/templates/_backend_select.html) with BACKEND_LIST, keeping its value.
 */
export function fillBackendSelect(select) {
  const value = select.value;
  select.replaceChildren(select.querySelector('option[value="auto"]'),
    ...BACKEND_LIST.map((backend) => new Option(backend.label, backend.name)));
  if (CHOICES.includes(value)) select.value = value;
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
