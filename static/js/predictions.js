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
