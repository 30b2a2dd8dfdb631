/**
 * The /teach page's pictures and trained head, kept in IndexedDB so they survive a reload: one
 * record per base model ({size, classes: [{name, samples: [{features, thumb (a PNG Blob)}]}],
 * trained}), removed by the page's Clear button. Nothing leaves the browser.
 */
const DATABASE = 'belka-teach';
const STORE = 'lessons';

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, action) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const transaction = db.transaction(STORE, mode);
      const request = action(transaction.objectStore(STORE));
      transaction.oncomplete = () => resolve(request?.result);
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
  } finally {
    db.close();
  }
}

/** The lesson kept for `base`, or null (also when storage is unavailable). */
export async function loadLesson(base) {
  try {
    return (await run('readonly', (store) => store.get(base))) ?? null;
  } catch {
    return null;
  }
}

/** Keeps `lesson` for `base`; false when the browser refuses (private mode, quota). */
export async function saveLesson(base, lesson) {
  try {
    await run('readwrite', (store) => store.put(lesson, base));
    return true;
  } catch {
    return false;
  }
}

export async function clearLesson(base) {
  try {
    await run('readwrite', (store) => store.delete(base));
  } catch {
    /* nothing kept */
  }
}
