/**
 * The worker protocol: every message between a page (static/js/engine-client.js) and its
 * model's worker (static/js/engine-worker.js, running static/js/engine.js), defined once.
 *
 * This module holds JSDoc types only. Both sides name them in comments,
 * `@typedef {import('./protocol.js').Request} Request`, which costs nothing at run time:
 * nothing imports this file, so it is never fetched (the worker deliberately has no static
 * imports, and the page's start-up path none it does not need).
 *
 * The conversation:
 *   1. The page starts the worker with a URL whose query says what it will ask for first
 *      (`WorkerUrl`), so the worker begins that work before any message arrives.
 *   2. The page sends `Request`s {id, op, args}; the worker answers each with one `Reply`:
 *      {id, value} (the operation's result, typed arrays and ImageData transferred) or
 *      {id, error} (`PlainError`); an operation that reports progress first sends any number
 *      of {id, progress: [...]}.
 *   3. The worker runs the requests that change the backend or the model one at a time, in
 *      order (engine.js `changing`); "classify" waits for those sent before it; "cancel"
 *      ({id: 0, op: "cancel"}: its reply is ignored) is handled as soon as it arrives.
 *   4. With a SharedWorker, a request from another port than the last one is a new page of
 *      the tab (a reload): the worker forgets the last page's picture, taught head and
 *      running occlusion, and keeps the backend and the model (engine.js newPage).
 *
 * `Operations` lists each request's `op`, its `args` and the `value` it replies with.
 */

/**
 * The worker script's query string (engine-client.js Engine, read by engine-worker.js).
 * @typedef {object} WorkerUrl
 * @property {string} vendor the /vendor/<version>/ prefix of TF.js and the other libraries
 * @property {string[]} tf TF.js's parts (core, then the converter), imported in this order (repeated)
 * @property {string} [bundle] the backend's bundle, run right after TF.js
 * @property {string} [warm] the backend whose files are fetched ahead (backend, else the one "auto"
 *   measures first: "wasm", or "ort-wasm" for a model only ONNX Runtime Web runs)
 * @property {string[]} [first] model files the page knows it will need, fetched first (repeated)
 * @property {string} base where the site lives ("/", or a static copy's sub-path)
 * @property {'static'} [site] set on a static copy of the site (no server API)
 * @property {string} [model] the model the page will load
 * @property {string} [weights] the precision the page asked for (?weights=float32)
 * @property {string} [backend] the backend the page will ask for first, when its choice names one
 * @property {string} [manifest] the model's manifest version (from the page's config)
 * @property {string} [graph] the folder of the graph model the page will load ("graph/")
 */

/**
 * A request from the page.
 * @typedef {object} Request
 * @property {number} id the page's number for it (0: "cancel", whose reply the page ignores)
 * @property {keyof Operations} op the operation
 * @property {object} [args] its arguments (see `Operations`)
 */

/**
 * An error as plain data: its name, message and own plain fields (GradientUnsupportedError's
 * backend and kernel...). The page throws it again as an EngineError with the same fields.
 * @typedef {{name: string, message: string} & Record<string, unknown>} PlainError
 */

/**
 * The worker's answer to a request: exactly one of value, error; or, before it, progress.
 * @typedef {{id: number, value: any} | {id: number, error: PlainError} | {id: number, progress: any[]}} Reply
 */

/**
 * How an operation runs in the worker: `op(args, {progress})`.
 * @typedef {object} OperationContext
 * @property {(...values: any[]) => void} progress sends {id, progress: values} to the page
 */

/** @typedef {{backend: string, reason: string}} BackendFailure */
/** @typedef {{backend: string, choice: string, failures: BackendFailure[], changed: boolean}} BackendReply */
/** @typedef {{bbox: number[], box: {ymin: number, xmin: number, ymax: number, xmax: number},
 *   classId: number, label: string, score: number}} Detection */

/**
 * Every request, `op: (args) => reply`. Pictures travel as ImageBitmaps (moved with
 * `transfer`) or, for "classify", as the image file itself (a Blob, decoded in the worker).
 * @typedef {object} Operations
 * @property {() => {tfjs: string}} start TF.js's version: the first request, proof the worker runs
 * @property {(args: {choice: string}) => BackendReply} backend activates the backend for
 *   `choice` ("auto" or a backend name; falls back in order); a model loaded on another backend
 *   is dropped (`changed`)
 * @property {(args: {name: string, weights?: string|null, warm?: boolean}) => {manifest: object,
 *   weights: {folder: string, dtype: string}, loadMs: number, warmupMs: number|null}} loadClassifier
 *   loads the classifier `name` (the same one already loaded is kept); with `warm`, runs it once
 * @property {(args: {name: string, warm?: boolean}) => {manifest: object, defaults: {scoreThreshold:
 *   number, iouThreshold: number, maxBoxes: number}, loadMs: number, warmupMs: number|null,
 *   execution: string}} loadDetector loads the detector `name`; with `warm`, runs it once
 * @property {() => number} warmUp one run on zeros (kernels compiled): its ms
 * @property {(args: {image: Blob|ImageBitmap}) => {output: Float32Array, probabilities: Float32Array,
 *   input: Float32Array, ms: number}} classify classifies a picture; its model input is kept for
 *   explanations
 * @property {(args: {image: ImageBitmap, views?: number, seed?: number, classify?: boolean}) =>
 *   {features: Float32Array, views?: Float32Array, probabilities?: Float32Array, ms: number}} features
 *   the features the classifier's head reads (and of `views` augmented views, seeded)
 * @property {() => {layers: {name: string, className: string, shape: number[]}[], defaultLayer: string,
 *   model: 'layers'|'graph', scoreKind: string}} gradcamLayers Grad-CAM's layers (loads the layers model)
 * @property {(args: {classIndex: number, layer: string, taught?: boolean}) => {heatmap: Float32Array,
 *   shape: number[], score: number, ms: number}} gradcam Grad-CAM of the last picture (with
 *   `taught`: through the taught head)
 * @property {(args: {classIndex: number, patch: number, stride: number, fill?: number|number[]},
 *   ctx: OperationContext) => {heatmap: Float32Array, shape: number[], drops: Float32Array, rows: number[],
 *   cols: number[], baseline: number, images: number, ms: number}} occlusion the occlusion map of the
 *   last picture; progress(done, total) after each batch; "cancel" stops it (CancelledError)
 * @property {(args: {features: Float32Array, labels: number[], views: {features: Float32Array, of:
 *   number[]}|null, classes: number, hidden: number, epochs: number, learningRate: number,
 *   batchSize: number, validationSplit: number, seed: number}, ctx: OperationContext) => {history:
 *   object[], split: {train: number[], val: number[]}, trainingRows: number[], weightSpecs: object[],
 *   data: Float32Array}} train trains a head on features; progress({epoch, loss, accuracy, valLoss,
 *   valAccuracy}) each epoch; "cancel" stops it (AbortError)
 * @property {(args: {weightSpecs: object[], data: Float32Array}) => {layers: number}} useHead
 *   puts back a head trained earlier
 * @property {(args: {image: ImageBitmap}) => {logits: Float32Array, probabilities: Float32Array,
 *   input: Float32Array, ms: number}} predictTaught a picture through the base and the taught head
 * @property {() => null} cancel stops a running occlusion map or training (sent with id 0)
 * @property {(args: {heatmap: Float32Array, shape: number[], width: number, height: number}) =>
 *   ImageData} heatmapImage a heatmap resized and coloured (jet)
 * @property {(args: {image: ImageBitmap, options?: {scoreThreshold?: number, maxBoxes?: number,
 *   keepInput?: boolean}}) => {detections: Detection[], width: number, height: number,
 *   inferenceMs: number, input?: Float32Array}} detect objects in a picture or video frame
 * @property {(args: {mode?: 'execute'|'executeAsync'}) => string} execution how the detector's
 *   graph runs; sets it when `mode` is given
 * @property {() => {numTensors: number, modelCalls: number, backend: string|null}} stats for tests
 * @property {(args: {thisPage?: boolean}) => (string[]|{url: string, transferSize: number,
 *   encodedBodySize: number, status: number|null}[])} resources the URLs the worker fetched (all
 *   modules imported first): what an offline visit needs; with `thisPage`, this page's entries
 * @property {(args: {name: string, present: boolean}) => boolean} kernel test hook: takes the
 *   active backend's kernel `name` away or puts it back; whether it is there now
 */

export {};
