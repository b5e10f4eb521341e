/**
 * The congestion window of durable sends on one connection (core/sdk
 * window.go), the way TCP paces segments: at most `cwnd` sends are
 * unacknowledged; each ack grows it (by one below `ssthresh`, slow start; by
 * 1/cwnd above it), and an overload refusal halves it once per flight (the
 * refusals of sends already out when it was cut do not cut it again).
 *
 * After a cut nothing goes out until every send that was out at the cut has
 * its answer: those may be refusals too, and the refused sends must go out
 * again before any send queued after them, or a later message would reach
 * the server first and be stored ahead of them.
 */
export class SendWindow {
  cwnd: number;
  ssthresh: number;
  inflight = 0;
  /** Sends numbered so far on this connection. */
  sent = 0;
  /** Sends numbered up to this were out at the last cut. */
  cutAt = 0;
  /** Of those, still unanswered. */
  draining = 0;
  /** Cuts since the last ack: each doubles the pause. */
  cuts = 0;

  constructor(
    initial: number,
    readonly max: number,
  ) {
    this.cwnd = Math.min(initial, max);
    this.ssthresh = max;
  }

  /** How many more sends may go out now. */
  room(): number {
    return this.draining > 0 ? 0 : Math.floor(this.cwnd) - this.inflight;
  }

  /** Numbers one send going out. */
  take(): number {
    this.inflight++;
    return ++this.sent;
  }

  /** Uncounts the send numbered n (its connection ended, or it was answered). */
  answered(n: number): void {
    this.inflight--;
    if (n <= this.cutAt && this.draining > 0) this.draining--;
  }

  /** An answer that was not an overload refusal. */
  acked(n: number): void {
    this.answered(n);
    this.cuts = 0;
    this.cwnd = Math.min(this.cwnd < this.ssthresh ? this.cwnd + 1 : this.cwnd + 1 / this.cwnd, this.max);
  }

  /** An overload refusal; true when it cut the window (the first refusal of a flight). */
  refused(n: number): boolean {
    this.answered(n);
    if (n <= this.cutAt) return false;
    this.ssthresh = Math.max(this.cwnd / 2, 1);
    this.cwnd = this.ssthresh;
    this.cutAt = this.sent;
    this.draining = this.inflight;
    this.cuts++;
    return true;
  }
}
