/**
 * One operation at a time: a page's work (decoding, a model call, drawing its result) queued so
 * that each starts after the one before it has finished, whatever the user clicks meanwhile.
 *
 *   const { serial, idle } = operationQueue();
 *   serial(async () => ...)   resolves or rejects with the task's own result, after every task
 *                             queued before it (a failed task does not stop the ones after it)
 *   idle()                    resolves once everything queued so far is done
 */
export function operationQueue() {
  let tail = Promise.resolve();
  return {
    serial(task) {
      const run = tail.then(task);
      tail = run.catch(() => {});
      return run;
    },
    idle() {
      return tail.then(() => {});
    },
  };
}
