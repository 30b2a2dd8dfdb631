/**
 * The model picker (<select id="model-select">, app/templates/_model_select.html): picking a
 * model opens this page for it, ?model=NAME in the address (the other parameters, such as
 * ?backend=, kept). The server then serves the page for that model and remembers the pick
 * (app/pages.py), so the model's worker starts on the right model from the first byte. An
 * exported static site has one page per model instead (config.modelPages: name -> path).
 */
import { readPageConfig } from './config.js';

export function wireModelPicker(select = document.getElementById('model-select')) {
  if (!select) return;
  const current = select.value;
  select.addEventListener('change', () => {
    if (select.value === current) return;
    // a static site has a page per model (config.modelPages); the server renders ?model=
    const pages = readPageConfig().modelPages;
    const url = new URL(window.location.href);
    if (pages?.[select.value]) url.pathname = new URL(pages[select.value], url).pathname;
    else url.searchParams.set('model', select.value);
    select.disabled = true; // until the page for that model replaces this one
    window.location.assign(url.href);
  });
}
