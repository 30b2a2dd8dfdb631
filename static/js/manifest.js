/**
 * A converted Belka model's manifest.json (task, labels, preprocessing, provenance, files),
 * served by the app at /models/<name>/manifest.json; read by the pages and by the worker
 * that runs the model (static/js/model.js).
 */
import { fetchEarly, prefetch } from './prefetch.js';
import { siteUrl } from './site.js';

/** Raised when a model's files cannot be fetched or do not make sense. */
export class ModelLoadError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'ModelLoadError';
  }
}

/** /models/<name>/<path> */
export function modelUrl(name, path) {
  return siteUrl(`models/${encodeURIComponent(name)}/${path}`);
}

// model name -> the version of its manifest the page named (the server's page config,
// config.modelFiles.version: the first 16 hex digits of the file's sha256)
const manifestVersions = new Map();

/**
 * Remembers the version of `name`'s manifest the page was served with: its manifest is then
 * fetched as manifest.json?v=<version>, which the server and the service worker keep for good
 * (a reconverted model gets a new version with the next page, which is always revalidated).
 */
export function useManifestVersion(name, version) {
  if (name && version) manifestVersions.set(name, version);
}

/** /models/<name>/manifest.json, with ?v=<version> when the page named one (useManifestVersion). */
export function manifestUrl(name) {
  const url = modelUrl(name, 'manifest.json');
  const version = manifestVersions.get(name);
  return version ? `${url}?v=${encodeURIComponent(version)}` : url;
}

/**
 * Starts fetching (static/js/prefetch.js) /models/<name>/manifest.json and the model.json of
 * the graph model it names for pages (pageGraph, `weights` as the page asks): at once when the
 * page named that folder (`graph`, from its config), else once the manifest is in; the weight
 * shards follow. Resolves to the manifest, or null when it could not be read: failures are
 * left for the loaders to report.
 */
export function prefetchModel(name, weights = null, graph = null, runtime = null) {
  if (graph) prefetch(modelUrl(name, `${graph}model.json`)).catch(() => {});
  return prefetch(manifestUrl(name))
    .then((response) => (response.ok ? response.clone().json() : null)) // the loader reads the original
    .then((manifest) => {
      if (manifest) prefetch(modelUrl(name, pageModelFile(manifest, runtime, weights))).catch(() => {});
      return manifest;
    })
    .catch(() => null);
}

/**
 * The runtime a page runs the model on: `runtime` when a backend is named ("tfjs" | "ort":
 * backend-choice.js), else TF.js when the model has a TF.js graph model, else ONNX Runtime
 * Web. `manifest`: a manifest, or the page config's modelFiles ({formats, page_weights...}).
 */
export function pageRuntime(manifest, runtime = null) {
  if (runtime) return runtime;
  const formats = manifest.formats ?? {};
  const names = Array.isArray(formats) ? formats : Object.keys(formats);
  return names.includes('graph') || !names.includes('onnx') ? 'tfjs' : 'ort';
}

/** The file a page loads first for the model on `runtime` (pageRuntime): a model.json or a .onnx. */
export function pageModelFile(manifest, runtime = null, weights = null) {
  return pageRuntime(manifest, runtime) === 'ort' ? pageOnnx(manifest, weights).file
    : `${pageGraph(manifest, weights).folder}model.json`;
}

/**
 * The ONNX model a page downloads for ONNX Runtime Web: {file, folder, dtype}. The converter's
 * choice (manifest.page_weights.onnx: its float16 copy, half the download, when it passed its
 * check), unless `weights` is "float32": the model as converted, the server's.
 */
export function pageOnnx(manifest, weights = null) {
  const chosen = manifest.page_weights?.onnx;
  const folder = weights !== 'float32' && chosen?.folder ? chosen.folder : 'onnx/';
  return { file: `${folder}model.onnx`, folder, dtype: folder === 'onnx/' ? 'float32' : chosen.dtype };
}

/** Fetches and checks /models/<name>/manifest.json (a model for `task`). */
export async function loadManifest(name, task = 'classification') {
  const url = manifestUrl(name);
  let response;
  try {
    response = await fetchEarly(url);
  } catch (cause) {
    throw new ModelLoadError(`Could not reach the server for ${url} (${cause.message}).`, { cause });
  }
  if (!response.ok) {
    throw new ModelLoadError(`${url} answered ${response.status} ${response.statusText}.`);
  }
  let manifest;
  try {
    manifest = await response.json();
  } catch (cause) {
    throw new ModelLoadError(`${url} is not valid JSON.`, { cause });
  }
  const problem = manifestProblem(manifest, task);
  if (problem) throw new ModelLoadError(`${url}: ${problem}.`);
  return manifest;
}

function manifestProblem(m, task) {
  if (m.task !== task) return `task is "${m.task}", not "${task}"`;
  if (!m.formats?.graph && !m.formats?.onnx) return 'the model has neither a TF.js graph model nor an ONNX model';
  const p = m.preprocessing;
  if (!p || !Array.isArray(p.size) || !Array.isArray(p.value_range)) return 'no preprocessing spec';
  if (!Array.isArray(m.labels) || m.labels.length === 0) return 'no labels';
  if (task === 'detection') {
    if (!m.formats?.graph) return 'the detector has no TF.js graph model';
    if (!m.output?.boxes?.node || !m.output?.scores?.node) return 'no boxes and scores outputs';
    if (!m.postprocessing) return 'no postprocessing defaults';
    return null;
  }
  if (!['logits', 'probabilities'].includes(m.output?.kind)) return `unknown output kind "${m.output?.kind}"`;
  return null;
}

/** ?weights=float32 in the page's address: the graph model as converted, not the page's default. */
export function weightsFromUrl(search = globalThis.location?.search ?? '') {
  return new URLSearchParams(search).get('weights') === 'float32' ? 'float32' : null;
}

/**
 * The graph model the page downloads: {folder: "graph-float16/" | "graph/", dtype}. The
 * converter's choice for pages (manifest.page_weights: float16, half the download, when it
 * passed its check), unless `weights` is "float32": the graph model as converted, which the
 * server's numbers are checked against.
 */
export function pageGraph(manifest, weights = null) {
  const chosen = manifest.page_weights;
  if (weights !== 'float32' && chosen?.graph) return { folder: chosen.graph, dtype: chosen.dtype };
  const quantization = manifest.quantization ?? 'none';
  return { folder: 'graph/', dtype: quantization === 'none' ? 'float32' : quantization };
}

/** What the page shows about a model's download: the graph files' bytes and weight shards. */
export function downloadFacts(manifest, folder = 'graph/') {
  const graphFiles = manifest.files.filter((f) => f.path.startsWith(folder));
  return {
    bytes: graphFiles.reduce((sum, f) => sum + f.bytes, 0),
    shards: graphFiles.filter((f) => f.path.endsWith('.bin')).length,
  };
}
