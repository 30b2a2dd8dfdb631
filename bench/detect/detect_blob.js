// bench/detect_bench.py: the page's model input and detections for a PNG (base64), with belka.detectBlob.
async (png) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const result = await window.belka.detectBlob(new Blob([bytes], {type: 'image/png'}));
  return {input: result.input, detections: result.detections.length, inferenceMs: result.inferenceMs};
}
