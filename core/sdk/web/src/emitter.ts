/** A typed event emitter: `on` returns the function that removes the listener. */
export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  private listeners: { [K in keyof Events]?: Set<(v: Events[K]) => void> } = {};

  /** Calls `fn` for every `event` until the returned function is called. */
  on<K extends keyof Events>(event: K, fn: (v: Events[K]) => void): () => void {
    (this.listeners[event] ??= new Set()).add(fn);
    return () => this.off(event, fn);
  }

  /** Calls `fn` for the next `event` only. */
  once<K extends keyof Events>(event: K, fn: (v: Events[K]) => void): () => void {
    const off = this.on(event, (v) => {
      off();
      fn(v);
    });
    return off;
  }

  /** Removes a listener. */
  off<K extends keyof Events>(event: K, fn: (v: Events[K]) => void): void {
    this.listeners[event]?.delete(fn);
  }

  /** Delivers to the listeners in order; a throwing listener does not stop the others or the SDK. */
  protected emit<K extends keyof Events>(event: K, v: Events[K]): void {
    for (const fn of [...(this.listeners[event] ?? [])]) {
      try {
        fn(v);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
