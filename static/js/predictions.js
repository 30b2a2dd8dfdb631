/**
 * From class probabilities to what the page says: the top-k classes and the
 * squirrel verdict. Labels come from the model's manifest.json, never from here.
 */
import { formatPercent } from './format.js';

/** The k most probable classes: [{index, label, probability}], most probable first. */
export function topK(probabilities, labels, k = 5) {
  const indices = Array.from(probabilities.keys());
  indices.sort((a, b) => probabilities[b] - probabilities[a] || a - b);
  return indices.slice(0, k).map((index) => ({
    index,
    label: labels[index] ?? `class ${index}`,
    probability: probabilities[index],
  }));
}

/** The first name of an ImageNet label: "fox squirrel, eastern fox squirrel, ..." -> "fox squirrel". */
export function shortLabel(label) {
  return label.split(',')[0].trim();
}

/**
 * The banner text for the most probable class `top1` ({index, label, probability}):
 * "Squirrel (fox squirrel, 87%)" when its index is one of `squirrelClasses`, else
 * "Not a squirrel: looks like a tabby (64%)".
 */
export function squirrelVerdict(top1, squirrelClasses) {
  const name = shortLabel(top1.label);
  const percent = formatPercent(top1.probability);
  if (squirrelClasses.includes(top1.index)) {
    return { squirrel: true, text: `Squirrel (${name}, ${percent})` };
  }
  const article = /^[aeiou]/i.test(name) ? 'an' : 'a';
  return { squirrel: false, text: `Not a squirrel: looks like ${article} ${name} (${percent})` };
}

/**
 * The class index a person typed: "281", "tabby, tabby cat (281)" (a suggestion), a name
 * ("fox squirrel", any of a label's comma-separated names, any case), else the first
 * label containing the text. null when nothing matches.
 */
export function findClass(text, labels) {
  const query = text.trim().toLowerCase();
  if (!query) return null;
  const number = /^(\d+)$/.exec(query) ?? /\((\d+)\)$/.exec(query);
  if (number) {
    const index = Number(number[1]);
    return index < labels.length ? index : null;
  }
  const names = labels.map((label) => label.toLowerCase().split(',').map((n) => n.trim()));
  const exact = names.findIndex((list) => list.includes(query));
  if (exact >= 0) return exact;
  const partial = labels.findIndex((label) => label.toLowerCase().includes(query));
  return partial >= 0 ? partial : null;
}
