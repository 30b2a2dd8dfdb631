/**
 * The webcam: getUserMedia into a <video>, released (every track stopped) on stop, and a
 * message a person can act on when there is no camera or no permission.
 */

/**
 * Why the camera cannot start, from getUserMedia's error (or its absence), for a person:
 * {title, text}, what happened and what to do.
 */
export function cameraProblem(error) {
  if (!navigator.mediaDevices?.getUserMedia) {
    return { title: 'No camera on this page.', text: 'This browser cannot use a camera on this page (cameras need ' +
      'https or localhost). Use a photo or video file instead.' };
  }
  switch (error?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return { title: 'Camera permission denied.', text: 'Camera permission was denied. Allow the camera for ' +
        'this site (the camera icon in the address bar), then press Start camera again; or use a photo or ' +
        'video file.' };
    case 'NotFoundError':
    case 'OverconstrainedError':
      return { title: 'No camera found.', text: 'No camera was found. Plug one in and press Start camera ' +
        'again, or use a photo or video file.' };
    case 'NotReadableError':
      return { title: 'The camera is busy.', text: 'The camera is busy (another application is using it). ' +
        'Close it and try again.' };
    default:
      return { title: 'The camera could not start.', text: `The camera could not start: ${error?.message ?? error}.` };
  }
}

export class Camera {
  constructor(video) {
    this.video = video;
    this.stream = null;
  }

  /** Starts the camera into the video element; throws (see cameraProblem) when it cannot. */
  async start() {
    if (!navigator.mediaDevices?.getUserMedia) throw new Error('no getUserMedia');
    this.stop();
    this.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: 'environment' }, audio: false,
    });
    this.video.srcObject = this.stream;
    await this.video.play();
  }

  /** Releases the camera: every track stopped (the browser's camera light goes off). */
  stop() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.video.srcObject = null;
  }

  get active() {
    return Boolean(this.stream?.getTracks().some((track) => track.readyState === 'live'));
  }
}
