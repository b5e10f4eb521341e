/**
 * Real-user monitoring: what one connect measured of the candidates it raced,
 * reported to the LBS (`POST /v1/rum`, lbs/README.md "Steering by
 * measurements"), which orders the entry points of the client's prefix by
 * what its users measured. The Go SDK's core/sdk/rum.go does the same.
 */

/** An attempt's outcome, as lbs/lbsapi names them. */
export type AttemptOutcome = "won" | "lost" | "failed";

/** One raced candidate as reported (lbs/lbsapi.Attempt). */
export interface ReportAttempt {
  id: string;
  transport: "weblink";
  ms: number;
  outcome: AttemptOutcome;
}

/** The body of a report (lbs/lbsapi.Report). */
export interface ConnectReport {
  sdk?: string;
  platform?: string;
  attempts: ReportAttempt[];
}

/** Limits of a report the LBS accepts (lbs/lbsapi). */
export const MAX_REPORT_ATTEMPTS = 8;
export const MAX_ATTEMPT_MS = 120_000;

interface Entry {
  url: string;
  start: number;
  end?: number;
  failed?: boolean;
}

/**
 * The attempts of one connect: when each started, and when its connection
 * opened (before the login) or failed. An attempt aborted because another
 * won is "lost", with the time it had run until then (a lower bound), not
 * "failed": its path did not fail.
 */
export class RaceLog {
  private readonly at: Entry[] = [];
  private winner = -1;
  private decided = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Records an attempt's start; returns its index. */
  start(url: string): number {
    this.at.push({ url, start: this.now() });
    return this.at.length - 1;
  }

  /**
   * Records attempt i's connection opened (ok) or failed. The race takes
   * the first to open (race.ts), so that one is the winner; the others are
   * aborted when it opens, before their failures come in.
   */
  opened(i: number, ok: boolean): void {
    const e = this.at[i];
    if (!e || e.end !== undefined) return;
    if (!ok && this.winner >= 0) return; // aborted by the winner: lost, not failed
    e.end = this.now();
    e.failed = !ok;
    if (ok && this.winner < 0) {
      this.winner = i;
      this.decided = e.end;
    }
  }

  /**
   * The report's attempts, for the entry points `id` knows (others, such as
   * a default link no answer lists, are left out), at most
   * MAX_REPORT_ATTEMPTS.
   */
  attempts(id: (url: string) => string | undefined): ReportAttempt[] {
    if (this.winner < 0) return [];
    const out: ReportAttempt[] = [];
    this.at.forEach((e, i) => {
      const ep = id(e.url);
      if (ep === undefined || out.length === MAX_REPORT_ATTEMPTS) return;
      let outcome: AttemptOutcome = "lost";
      // A lost attempt had run until the winner was decided (a lower bound).
      let end = Math.min(e.end ?? this.decided, this.decided);
      if (i === this.winner) [outcome, end] = ["won", e.end ?? this.decided];
      else if (e.failed) [outcome, end] = ["failed", e.end!];
      const ms = Math.min(Math.max(Math.round(end - e.start), 0), MAX_ATTEMPT_MS);
      out.push({ id: ep, transport: "weblink", ms, outcome });
    });
    return out;
  }
}

/** How often a client reports. */
export interface ReportPolicy {
  /** The share of connects reported, 0..1; 0 reports none. */
  sample: number;
  /** The least time between two reports of this client. */
  minIntervalMs: number;
}

/** Decides which connects are reported: a sample, at most one per interval, one in flight. */
export class ReportGate {
  private last = -Infinity;
  private busy = false;

  constructor(
    private readonly p: ReportPolicy,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  /** Whether to report now; if so, the caller must call done() when the report ends. */
  take(): boolean {
    if (this.busy || this.p.sample <= 0) return false;
    if (this.p.sample < 1 && this.random() >= this.p.sample) return false;
    const t = this.now();
    if (t - this.last < this.p.minIntervalMs) return false;
    this.last = t;
    this.busy = true;
    return true;
  }

  done(): void {
    this.busy = false;
  }
}
