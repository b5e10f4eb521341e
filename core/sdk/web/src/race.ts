/** A signal that aborts when either does. */
export function anySignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  const c = new AbortController();
  const abort = () => c.abort();
  if (a.aborted || b.aborted) c.abort();
  a.addEventListener("abort", abort, { once: true });
  b.addEventListener("abort", abort, { once: true });
  return c.signal;
}

/**
 * Runs `f` over `items`, starting the next attempt `staggerMs` after the
 * previous one or at once when one fails, at most `max` at a time; the first
 * success wins and the others are aborted (a success that comes after it
 * goes to `discard`). Rejects with the errors of all
 * when every attempt failed.
 */
export function race<T, R>(
  items: T[],
  max: number,
  staggerMs: number,
  f: (item: T, signal: AbortSignal) => Promise<R>,
  discard?: (late: R) => void,
): Promise<R> {
  return new Promise((resolve, reject) => {
    const ctl = new AbortController();
    const errors: unknown[] = [];
    let next = 0;
    let running = 0;
    let done = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const launch = () => {
      clearTimeout(timer);
      if (done || next >= items.length || running >= max) return;
      const item = items[next++]!;
      running++;
      f(item, ctl.signal).then(
        (r) => {
          running--;
          if (done) return discard?.(r);
          done = true;
          clearTimeout(timer);
          ctl.abort();
          resolve(r);
        },
        (err) => {
          running--;
          if (done) return;
          errors.push(err);
          if (next < items.length) launch();
          else if (running === 0) {
            done = true;
            reject(new AggregateError(errors, errors.map(String).join("; ")));
          }
        },
      );
      if (next < items.length) timer = setTimeout(launch, staggerMs);
    };
    if (items.length === 0) return reject(new AggregateError([], "nothing to race"));
    launch();
  });
}
