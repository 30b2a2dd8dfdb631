/**
 * Starts the page's model worker as early as the page can: a module of its own, run before
 * the page's main module (which waits for its whole import graph), so the worker's TF.js
 * and model downloads begin at once. The page's module then gets the same worker from
 * startEngine().
 */
import { readPageConfig } from './config.js';
import { startEngine } from './engine-client.js';
import { weightsFromUrl } from './manifest.js';

const { model } = readPageConfig();
if (model) startEngine({ model, weights: weightsFromUrl() });
