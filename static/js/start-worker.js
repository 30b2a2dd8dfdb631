/**
 * Starts the page's model worker as early as the page can: a module of its own, run before
 * the page's main module (which waits for its whole import graph), so the worker's TF.js
 * and model downloads begin at once. The page's module gets the same worker from
 * startPageEngine() (it imports this module, so whichever runs first starts the worker, with
 * the same URL).
 */
import { backendInfo, backendsFor, counterpartOf, initialChoice } from './backend-choice.js';
import { readPageConfig } from './config.js';
import { startEngine } from './engine-client.js';
import {
  manifestUrl, modelUrl, pageGraph, pageModelFile, pageRuntime, useManifestVersion, weightsFromUrl,
} from './manifest.js';

/**
 * The page's worker for its model (the config block), the weights the page loads
 * (pageWeights) and the backend the user chose, when the choice names one ("auto" measures
 * first, on the page). The config's modelFiles (the manifest's version and what it says of
 * the page's graph model) let the worker fetch the manifest and that model.json side by side,
 * as the first thing it does. (What the worker's URL says: static/js/protocol.js `WorkerUrl`.)
 */
export function startPageEngine(config = readPageConfig()) {
  const { choice } = initialChoice();
  const files = config.modelFiles ?? null;
  const weights = pageWeights(config);
  useManifestVersion(config.model, files?.version);
  const allowed = backendsFor(files?.formats);
  const resolved = counterpartOf(choice, allowed);
  const backend = resolved === 'auto' ? null : resolved;
  // the runtime of the named backend, else the one "auto" measures first (pageRuntime)
  const runtime = files ? pageRuntime(files, backendInfo(backend)?.runtime) : 'tfjs';
  const graph = files && runtime === 'tfjs' ? pageGraph(files, weights).folder : null;
  return startEngine({
    model: config.model,
    weights,
    backend,
    warm: runtime === 'ort' ? 'ort-wasm' : 'wasm',
    version: files?.version ?? null,
    graph,
    // fetched by the worker before it imports anything: the same URLs its loaders ask for
    first: config.model && files ? [modelUrl(config.model, pageModelFile(files, runtime, weights)),
      manifestUrl(config.model)] : [],
  });
}

/** The weights the page loads: ?weights=float32, else the page's own choice (config.weights: the
 * teach page trains on float32 features, the numbers the server's model will compute), else the
 * model's choice for pages (null). */
export function pageWeights(config = readPageConfig()) {
  return weightsFromUrl() ?? config.weights ?? null;
}

const config = readPageConfig();
if (config.model) startPageEngine(config);
