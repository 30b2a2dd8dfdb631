/**
 * The page kit: the start-up every model page shares, written once. A page (classify.js,
 * detect.js, teach.js) describes itself with a small adapter (`PageAdapter`, below: what its
 * model is called, which request loads it, how it shows what happened) and the kit does the
 * rest, always the same way:
 *
 *   backend choice   ?backend= (wins), else remembered, else "auto" (backend-choice.js: the
 *                    list of backends is data there, not code in each page)
 *   start            the worker's "start", then the backend and the model; with a backend
 *                    named, the three requests go at once (the worker answers them in order,
 *                    engine.js `changing`; it has usually done the work already, headStart)
 *   auto             the backend measured fastest for the model here (auto-backend.js)
 *   load, warm-up    the page's model loaded on the active backend, run once so its kernels
 *                    compile (or its first real input is the warm-up: warmUpIfCold)
 *   switching        the <select> or belka.setBackend: the model loaded again on the new backend
 *   window.belka     the part of the test API every page has (api())
 *
 * Every operation runs through the page's one queue (serial.js), one at a time, in order.
 */
import { medianMs, pickAuto } from './auto-backend.js';
import {
  backendsFor, CHOICES, counterpartOf, fillBackendSelect, initialChoice, rememberChoice, unknownBackendMessage,
} from './backend-choice.js';
import { loadManifest } from './manifest.js';
import { operationQueue } from './serial.js';
import { clearMessage, showBackendNote, showMessage } from './view.js';

/**
 * @typedef {object} PageAdapter What a page tells the kit about itself.
 * @property {string} noun "model", "detector": in status lines and messages
 * @property {string} [task] the manifest's task, read when "auto" measures ("classification")
 * @property {string|null} [autoBackend] the backend "auto" stands for on this page, without
 *   measuring (the teach page: "wasm"); null (the default): measured
 * @property {boolean} [warmUpAfterStart] queue warmUpIfCold behind the start (default true)
 * @property {boolean} [warnUnknownBackend] say so when ?backend= names no backend (default true)
 * @property {string} [readyText] the status line once the model runs
 * @property {(text: string) => void} [status] shows a status line
 * @property {(warm: boolean) => {op: string, args: object}} loadRequest the worker request
 *   that loads the page's model (with `warm`, when `warmsInLoad`)
 * @property {boolean} [warmsInLoad] the load request warms the model up itself
 * @property {(answer: object) => any} loaded shows a load's answer; returns the model kept
 *   (kit.model); may throw (the start then fails)
 * @property {() => void} [loading] a load begins: what the last model showed is stale
 * @property {(model: any) => void} [modelReady] the model is loaded (and warm when asked)
 * @property {() => void} [backendChanged] the active backend changed: the model is gone
 * @property {(choice: string, result: object) => void} [backendShown] shows a backend
 *   request's answer {backend, failures, changed} (fallbacks)
 * @property {() => void} [render] shows kit.choice, kit.backend (and the page's timings)
 * @property {() => boolean} [busy] the page's own input warms the model up now (no warm-up)
 * @property {() => (Promise<void>|void)} [started] more start-up, once the model is loaded
 * @property {(choice: string) => Promise<any>} [changeBackend] the page's switch (setBackend);
 *   without it the page has no choice()/autoReason()/setBackend() in window.belka
 * @property {(kind: string, error: Error) => void} [report] says what failed, in place of
 *   the kit's messages: kind "engine" (the worker cannot start), "backend", "load", "warmUp",
 *   "start" (the start-up, or a switch, failed: after one of those, or alone)
 */

export class PageKit {
  /**
   * @param {{engine: import('./engine-client.js').Engine|null, config: object, page: PageAdapter}} options
   */
  constructor({ engine, config, page }) {
    this.engine = engine;
    this.config = config;
    this.page = page;
    // the backends that run the page's model (its formats, from the page's config)
    this.allowed = backendsFor(config.modelFiles?.formats);
    this.choice = 'auto'; // the user's choice, as shown
    this.backend = null; // the active backend
    this.autoWhy = null; // why "auto" chose its backend
    this.model = null; // what page.loaded() kept; null until loaded on the active backend
    this.warm = false; // whether the model has run once (kernels compiled) on this backend
    this.warmupMs = null;
    this.ready = null; // begin()'s promise
    const queue = operationQueue();
    this.queue = queue;
    this.queued = 0; // operations queued so far
    this.aheadAt = null; // while the start-up's requests went ahead: `queued` then (mayGoAhead)
    this.idle = () => queue.idle();
  }

  /** Queues an operation (serial.js): it starts once every operation queued before it is done. */
  serial(task) {
    this.queued += 1;
    return this.queue.serial(task);
  }

  /**
   * Whether a request may go to the worker now, right behind the start-up's (sent ahead, with
   * nothing else queued since): the worker runs it as soon as the model is loaded.
   */
  mayGoAhead() {
    return this.aheadAt === this.queued;
  }

  status(text) {
    this.page.status?.(text);
  }

  render() {
    this.page.render?.();
  }

  /**
   * Fills the page's backend <select> (#backend-select, when it has one) from BACKEND_LIST, then
   * queues the start (then the warm-up, unless the page says not to): belka.ready.
   */
  begin() {
    const select = document.getElementById('backend-select');
    if (select) fillBackendSelect(select, this.allowed);
    const started = this.serial(() => this.start());
    this.ready = this.page.warmUpAfterStart === false ? started
      : started.then((result) => (result.ok ? this.serial(() => this.warmUpIfCold()) : result));
    return this.ready;
  }

  /**
   * Picks the backend, loads the model (warmed up later: warmUpIfCold). With a backend named
   * (not "auto"), the worker gets the three requests of the start-up at once and answers them
   * in order, instead of one round trip after the other through this page's main thread.
   * {ok: true, backend} or {ok: false, error}; never rejects.
   */
  async start() {
    const { engine } = this;
    const initial = initialChoice();
    const { source, ignored } = initial;
    // a remembered backend that cannot run this model: the same device under its runtime
    const choice = counterpartOf(initial.choice, this.allowed);
    const started = engine.call('start');
    const backend = choice === 'auto' ? counterpartOf(this.page.autoBackend ?? 'auto', this.allowed) : choice;
    const ahead = backend === 'auto' ? {} : {
      backend: this.requestBackend(backend),
      model: this.requestLoad(false),
    };
    Object.values(ahead).forEach((answer) => answer.catch(() => {})); // reported where awaited
    if (backend !== 'auto') this.aheadAt = this.queued;
    try {
      return await this.startedUp({ choice, source, ignored, backend }, started, ahead);
    } finally {
      this.aheadAt = null;
    }
  }

  /** The rest of start(), once its requests are sent: their answers shown in turn. */
  async startedUp({ choice, source, ignored, backend }, started, ahead) {
    try {
      await started;
    } catch (error) {
      this.report('engine', error);
      return { ok: false, error: error.message };
    }
    if (source === 'url') rememberChoice(choice);
    if (ignored != null && this.page.warnUnknownBackend !== false) {
      const { title, text } = unknownBackendMessage(ignored, choice);
      showMessage('address', 'warning', title, text);
    }
    try {
      if (backend === 'auto') {
        await this.startAuto();
      } else {
        await this.useBackend(backend, choice, ahead.backend);
        await this.load(false, ahead.model);
      }
      await this.page.started?.();
      this.status(this.page.readyText);
      return { ok: true, backend: this.backend };
    } catch (error) {
      this.report('start', error);
      return { ok: false, error: error.message };
    }
  }

  /**
   * "auto": the backend measured fastest for this model here (static/js/auto-backend.js),
   * then the model loaded on it; the backend note says why.
   */
  async startAuto() {
    const { engine, config, page } = this;
    this.choice = 'auto';
    this.status('Choosing a backend…');
    const manifest = await loadManifest(config.model, page.task ?? 'classification');
    const measure = async (backend) => {
      this.status(`Measuring the ${page.noun} on ${backend}…`);
      await this.useBackend(backend, 'auto');
      if (this.backend !== backend) throw new Error(`${backend} did not start`);
      await this.load();
      return medianMs(() => engine.call('warmUp'));
    };
    const picked = await pickAuto({ model: config.model, manifest, measure, allowed: this.allowed });
    if (await this.useBackend(picked.backend, 'auto') || !this.model) await this.load(false);
    this.autoWhy = `auto chose ${this.backend}: ${picked.why}`;
    showBackendNote(this.autoWhy);
  }

  /**
   * Activates the backend for `choice` and shows what happened (fallbacks included).
   * Resolves to true when the active backend changed (the worker dropped the model: its
   * weights lived on the other backend). `asked`: the worker's answer to this request, when it
   * was sent already (start).
   */
  async useBackend(choice, shownChoice = choice, asked = null) {
    this.choice = shownChoice;
    this.autoWhy = null;
    this.status(choice === 'auto' ? 'Choosing a backend…' : `Starting the ${choice} backend…`);
    let result;
    try {
      result = await (asked ?? this.requestBackend(choice));
    } catch (error) {
      this.backend = null;
      this.render();
      this.report('backend', error);
      error.reported = true;
      throw error;
    }
    const { changed } = result;
    this.backend = result.backend;
    if (changed) {
      this.model = null;
      this.warmupMs = null;
      this.page.backendChanged?.();
    }
    this.page.backendShown?.(choice, result);
    this.render();
    return changed;
  }

  /** The worker's `backend` request for `choice`, among the backends that run the page's model. */
  requestBackend(choice) {
    return this.engine.call('backend', { choice, allowed: this.allowed });
  }

  /** The page's load request, sent to the worker. */
  requestLoad(warm) {
    const { op, args } = this.page.loadRequest(warm);
    return this.engine.call(op, args);
  }

  /**
   * Loads the page's model on the active backend (again, after a switch); with `warm`, also
   * runs it once so its kernels are compiled (else warmUpIfCold does it later, unless the
   * page's first input comes first and is the warm-up itself). `asked`: the worker's answer to
   * this request, when it was sent already (start).
   */
  async load(warm = true, asked = null) {
    const { config, page } = this;
    if (!config.model) throw new Error('No model to load.');
    this.status(`Loading the ${page.noun} ${config.model}…`);
    this.model = null;
    page.loading?.();
    let answer;
    try {
      answer = await (asked ?? this.requestLoad(warm));
    } catch (error) {
      this.report('load', error);
      error.reported = true;
      throw error;
    }
    clearMessage('model');
    const model = page.loaded(answer);
    this.warm = false;
    if (warm && page.warmsInLoad) this.warm = true;
    else if (warm) await this.warmUp();
    this.model = model;
    page.modelReady?.(model);
    this.render();
  }

  /** One run on zeros (kernels compiled now); a clear message when the backend cannot run it. */
  async warmUp() {
    this.status(`Warming up on ${this.backend}…`);
    try {
      this.warmupMs = await this.engine.call('warmUp');
      this.warm = true;
    } catch (error) {
      this.report('warmUp', error);
      error.reported = true;
      throw error;
    }
  }

  /**
   * The start-up warm-up, queued behind whatever the user gave meanwhile: when the page's own
   * input came first, it was the warm-up (no throwaway run ahead of it) and this does nothing.
   */
  async warmUpIfCold() {
    if (!this.model || this.warm || this.page.busy?.()) return { ok: true, backend: this.backend };
    try {
      await this.warmUp();
    } catch (error) {
      this.status('Not ready.');
      return { ok: false, error: error.message };
    }
    this.status(this.page.readyText);
    this.render();
    return { ok: true, backend: this.backend };
  }

  /**
   * Switches to `choice` (the <select>, or belka.setBackend): remembered, the backend
   * activated and the model loaded (and warmed up) on it. Throws at once for an unknown
   * choice; the promise rejects when the switch fails (reported already where it could be).
   */
  switchTo(choice) {
    if (!CHOICES.includes(choice)) throw new Error(`Unknown backend "${choice}".`);
    if (choice !== 'auto' && !this.allowed.includes(choice)) {
      throw new Error(`The ${this.page.noun} "${this.config.model}" cannot run on ${choice}: pick auto or one of ` +
        `${this.allowed.join(', ')}.`);
    }
    rememberChoice(choice);
    return (async () => {
      // The model's weights live on the backend that loaded them: load it again on the new one.
      if (choice === 'auto') await this.startAuto();
      else if (await this.useBackend(choice) || !this.model) await this.load();
    })();
  }

  /** Says what failed: the page's own report(), else the kit's messages. */
  report(kind, error) {
    if (this.page.report) {
      this.page.report(kind, error);
      return;
    }
    const { noun } = this.page;
    const { message } = error;
    if (kind === 'engine') showMessage('model', 'error', 'The page cannot run models.', message);
    else if (kind === 'backend') showMessage('backend', 'error', 'No backend available.', message);
    else if (kind === 'load') showMessage('model', 'error', `The ${noun} "${this.config.model}" could not be loaded.`, message);
    else if (kind === 'warmUp') {
      showMessage('model', 'error', `The ${noun} does not run on the ${this.backend} backend.`,
        `${message} Pick another backend.`);
    } else {
      this.status('Not ready.');
      if (!error.reported && !document.querySelector('#messages .banner-error')) {
        showMessage('model', 'error', 'Something went wrong.', message);
      }
      console.warn(error);
    }
  }

  /**
   * The test and debug API every model page has (window.belka): ready, config, model(),
   * backend(), numTensors(), worker(op, args), idle(); with page.changeBackend, also choice(),
   * autoReason() and setBackend(c). `extra`: the page's own entries (its getters kept as such).
   */
  api(extra = {}) {
    const { engine, config } = this;
    const api = {
      ready: this.ready,
      config,
      model: () => config.model,
      backend: () => this.backend,
      numTensors: () => (engine ? engine.call('stats').then((stats) => stats.numTensors) : Promise.resolve(0)),
      worker: (op, args) => (engine ? engine.call(op, args) : Promise.reject(new Error('No model.'))),
      idle: this.idle,
    };
    if (this.page.changeBackend) {
      Object.assign(api, {
        choice: () => this.choice,
        autoReason: () => this.autoWhy ?? null,
        setBackend: (choice) => this.serial(() => this.page.changeBackend(choice)),
      });
    }
    return Object.defineProperties(api, Object.getOwnPropertyDescriptors(extra));
  }
}
