/**
 * The page's configuration, written by the server into a JSON data block:
 *   <script type="application/json" id="belka-config">{...}</script>
 * (a data block is not executed, so it is allowed by our CSP).
 */

/** The parsed config object: {model, models, squirrelClasses} for the classify page. */
export function readPageConfig(id = 'belka-config') {
  const element = document.getElementById(id);
  if (!element) throw new Error(`The page has no #${id} configuration block.`);
  return JSON.parse(element.textContent);
}
