import { anySignal, race } from "./race.js";
import type { ConnectReport } from "./rum.js";
import type { LBSAnswer } from "./types.js";

/** The part of the Web Storage API the SDK uses (localStorage, or the app's own). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** How the LBS client asks. */
export interface LBSOptions {
  /** LBS base URLs (`http://host:7700`), raced from a rotating start. */
  servers: string[];
  appKey: string;
  env?: string;
  sdkVersion: string;
  platform?: string;
  /** Where the last good answer is kept (null: memory only). */
  storage: StorageLike | null;
  /** One attempt's limit; default 3000 ms. */
  timeoutMs?: number;
  /** Between racing attempts; default 250 ms. */
  staggerMs?: number;
  /** An older cached answer is not used; default 7 days. */
  maxCacheAgeMs?: number;
  /** For tests; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** For tests; default Date.now. */
  now?: () => number;
}

/** Where an answer came from. */
export type AnswerSource = "lbs" | "cache";

interface Cached {
  at: number;
  answer: LBSAnswer;
}

/**
 * The LBS client (the browser's lbs/lbsclient): asks `GET /v1/lbs` with the
 * appkey, SDK version and env tag; keeps the last good answer (in storage
 * where there is one) and answers from it at once next time, refreshing it in
 * the background once it is older than its TTL.
 */
export class LBSClient {
  private last?: Cached;
  private refreshing?: Promise<LBSAnswer>;
  private next = 0;
  private readonly key: string;
  private readonly fetchFn: typeof fetch;
  private readonly now: () => number;

  constructor(private o: LBSOptions) {
    this.key = `longlink.lbs.${o.appKey}.${o.env ?? ""}`;
    this.fetchFn = o.fetch ?? ((...a) => globalThis.fetch(...a));
    this.now = o.now ?? Date.now;
    try {
      const raw = o.storage?.getItem(this.key);
      if (raw) {
        const c = JSON.parse(raw) as Cached;
        if (c && c.answer && c.answer.appkey === o.appKey && typeof c.at === "number") this.last = c;
      }
    } catch {
      // A cache that does not parse is no cache.
    }
  }

  /** The WebLink URLs to race, best first, and where they came from. */
  async resolve(): Promise<{ urls: string[]; source: AnswerSource }> {
    const c = this.last;
    const age = c ? this.now() - c.at : Infinity;
    if (c && age < (this.o.maxCacheAgeMs ?? 7 * 86400_000)) {
      if (age > (c.answer.ttl || 0) * 1000) this.refresh().catch(() => {});
      return { urls: weblinkURLs(c.answer), source: "cache" };
    }
    return { urls: weblinkURLs(await this.refresh()), source: "lbs" };
  }

  /** Asks the LBS now (one query at a time) and keeps a good answer. */
  refresh(): Promise<LBSAnswer> {
    this.refreshing ??= this.query().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async query(): Promise<LBSAnswer> {
    const n = this.o.servers.length;
    if (n === 0) throw new Error("lbs: no servers");
    const start = this.next++ % n;
    const order = this.o.servers.map((_, i) => this.o.servers[(start + i) % n]!);
    const answer = await race(order, 3, this.o.staggerMs ?? 250, (base, signal) => this.fetchOne(base, signal));
    this.last = { at: this.now(), answer };
    try {
      this.o.storage?.setItem(this.key, JSON.stringify(this.last));
    } catch {
      // Storage full or denied: the answer is still kept in memory.
    }
    return answer;
  }

  /** The id of the WebLink entry point at url in the last answer (cached or fresh). */
  endpointID(url: string): string | undefined {
    return this.last?.answer.weblink?.find((e) => e.url === url)?.id;
  }

  /**
   * Posts what a connect measured (`POST /v1/rum`) to the next LBS server,
   * and to the one after it if that one cannot be reached; a refusal (4xx)
   * is not retried elsewhere. Sent as text/plain, a CORS "simple request",
   * so a browser sends no preflight: the LBS reads the body as JSON
   * whatever its type, and its answer allows any origin.
   */
  async report(rep: ConnectReport): Promise<void> {
    const body = JSON.stringify(rep);
    const n = this.o.servers.length;
    const start = this.next++ % Math.max(n, 1);
    let last: unknown = new Error("lbs: no servers");
    for (let i = 0; i < Math.min(n, 2); i++) {
      const base = this.o.servers[(start + i) % n]!;
      const q = new URLSearchParams({ appkey: this.o.appKey });
      try {
        const res = await this.fetchFn(`${base.replace(/\/$/, "")}/v1/rum?${q}`, {
          method: "POST",
          headers: { "Content-Type": "text/plain;charset=UTF-8" },
          body,
          signal: AbortSignal.timeout(this.o.timeoutMs ?? 3000),
        });
        if (res.ok) return;
        last = new Error(`lbs ${base}: report: HTTP ${res.status}`);
        if (res.status >= 400 && res.status < 500) break;
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  private async fetchOne(base: string, signal: AbortSignal): Promise<LBSAnswer> {
    const q = new URLSearchParams({ appkey: this.o.appKey });
    if (this.o.env) q.set("env", this.o.env);
    q.set("sdk", this.o.sdkVersion);
    if (this.o.platform) q.set("platform", this.o.platform);
    const timeout = AbortSignal.timeout(this.o.timeoutMs ?? 3000);
    const res = await this.fetchFn(`${base.replace(/\/$/, "")}/v1/lbs?${q}`, { signal: anySignal(signal, timeout) });
    if (!res.ok) throw new Error(`lbs ${base}: HTTP ${res.status}`);
    const a = (await res.json()) as LBSAnswer;
    if (!a || a.appkey !== this.o.appKey || weblinkURLs(a).length === 0) throw new Error(`lbs ${base}: no WebLink entry point`);
    return a;
  }
}

function weblinkURLs(a: LBSAnswer): string[] {
  return (a.weblink ?? []).map((e) => e.url ?? "").filter((u) => u !== "");
}
