/** A picture's centred square, drawn small: the thumbnails on /teach and /learn/pca. */
import { centerSquare } from './preprocess.js';

/** A `px` x `px` canvas holding the centred square of `bitmap` (an ImageBitmap or any image source). */
export function squareThumbnail(bitmap, px) {
  const { top, left, side } = centerSquare(bitmap.height, bitmap.width);
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = px;
  canvas.getContext('2d').drawImage(bitmap, left, top, side, side, 0, 0, px, px);
  return canvas;
}
