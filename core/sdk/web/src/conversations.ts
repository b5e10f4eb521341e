import type { Conversation, Message, MessagePage, SendAck } from "./types.js";
import { ConvType } from "./types.js";

/** What the conversation tracker needs from the client. */
export interface ConvHost {
  readonly account: string;
  request<T>(op: string, body?: unknown): Promise<T>;
  emitMessage(m: Message): void;
  emitConversation(c: Conversation): void;
  positionsChanged(): void;
  /** Rejects once the client is closed: sync jobs stop. */
  readonly closed: boolean;
}

interface ConvState {
  /** Last seq delivered (or acked to us) in order. */
  last: number;
  /** Highest seq the server has told us about. */
  maxSeen: number;
  /** Acked seqs of our own sends beyond last. */
  own: Set<number>;
  syncing: boolean;
  /** Pushes that arrived ahead of a gap: a short wait usually fills it without a sync. */
  held: Map<number, Message>;
  gapTimer: boolean;
}

type Job = { list: true } | { list?: false; conv: string; after: number };

/** Bounds the pushes held back per conversation; past it the conversation is synced. */
const maxHeld = 1024;
/** Remembers this many client_msg_ids of our own acked sends. */
const ownRing = 8192;

/**
 * Delivers conversation messages once each and in seq order per
 * conversation (core/sdk delivery.go): a duplicate (seq ≤ last) is dropped;
 * a push ahead of a gap is held for `gapWaitMs`, then the conversation is
 * synced from the last delivered seq; after every (re)connection the
 * conversation list is fetched and every conversation whose last seq is
 * beyond what was delivered is synced, page by page. It also keeps the
 * conversation list (unread counts, last message) current between fetches.
 */
export class ConvTracker {
  private states = new Map<string, ConvState>();
  private rows = new Map<string, Conversation>();
  private ownIds = new Set<string>();
  private ownOrder: string[] = [];
  private jobs: Job[] = [];
  private working = false;

  constructor(
    private host: ConvHost,
    lastSeqs: Record<string, number>,
    private gapWaitMs: number,
    private pageSize: number,
  ) {
    for (const [id, seq] of Object.entries(lastSeqs)) this.states.set(id, newState(seq));
  }

  /** The last delivered seq of every conversation. */
  positions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, cs] of this.states) if (cs.last > 0) out[id] = cs.last;
    return out;
  }

  /** The conversation list as last fetched and updated since, most recent first. */
  list(): Conversation[] {
    return [...this.rows.values()].sort((a, b) => (b.last?.time ?? 0) - (a.last?.time ?? 0) || b.last_seq - a.last_seq);
  }

  /** A connection came up: fetch the list and sync what was missed. */
  onConnected(): void {
    this.push({ list: true });
  }

  /** Fetches the conversation list now. */
  async refresh(): Promise<Conversation[]> {
    const r = await this.host.request<{ conversations?: Conversation[] }>("conversations");
    this.onList(r.conversations ?? []);
    return this.list();
  }

  onPush(m: Message): void {
    if (!m || typeof m.conv_id !== "string" || typeof m.seq !== "number") return;
    const cs = this.get(m.conv_id);
    cs.maxSeen = Math.max(cs.maxSeen, m.seq);
    if (m.seq <= cs.last) return; // a duplicate
    if (m.seq === cs.last + 1 && !cs.syncing) {
      this.deliver(m, cs);
      this.advance(cs);
      return;
    }
    // Ahead of a gap (or during a sync): hold it back.
    if (cs.held.size >= maxHeld) {
      cs.held.clear();
      this.startSync(m.conv_id, cs);
      return;
    }
    cs.held.set(m.seq, m);
    if (!cs.syncing) this.armGapTimer(m.conv_id, cs);
  }

  /** Our own message was acknowledged: it is not delivered again when it comes back. */
  onAck(ack: SendAck, m: Message): void {
    this.remember(m.client_msg_id);
    const cs = this.get(ack.conv_id);
    cs.maxSeen = Math.max(cs.maxSeen, ack.seq);
    if (ack.seq > cs.last) {
      cs.own.add(ack.seq);
      if (!cs.syncing) this.advance(cs);
    }
    const row = this.row(m);
    if (ack.seq >= row.last_seq) {
      row.last_seq = ack.seq;
      row.last = m;
      row.read_seq = Math.max(row.read_seq, ack.seq);
    }
    this.host.emitConversation(row);
  }

  /** The account read a conversation up to seq. */
  onRead(convId: string, seq: number): void {
    const row = this.rows.get(convId);
    if (!row) return;
    row.read_seq = Math.max(row.read_seq, seq);
    row.unread = seq >= row.last_seq ? 0 : Math.min(row.unread, row.last_seq - seq);
    if (row.unread === 0) row.mentions = 0;
    this.host.emitConversation(row);
  }

  /** A message was recalled: the list's last message says so. */
  onRecalled(convId: string, msgId: string): void {
    const row = this.rows.get(convId);
    if (row?.last?.msg_id === msgId) {
      row.last = { ...row.last, recalled: true };
      this.host.emitConversation(row);
    }
  }

  private onList(list: Conversation[]): void {
    for (const cv of list) {
      this.rows.set(cv.conv_id, { ...cv });
      const cs = this.get(cv.conv_id);
      cs.maxSeen = Math.max(cs.maxSeen, cv.last_seq);
      if (cv.last_seq > cs.last) this.startSync(cv.conv_id, cs);
    }
  }

  private onSynced(conv: string, page: MessagePage | undefined): void {
    const cs = this.get(conv);
    cs.syncing = false;
    if (!page) return; // failed: the next connection's list sync retries
    const msgs = page.messages ?? [];
    for (const m of msgs) {
      // Sync answers are authoritative: a hole in the seqs means there is
      // no message there.
      if (m.seq > cs.last) this.deliver(m, cs);
    }
    this.advance(cs);
    if (page.has_more && msgs.length > 0) this.startSync(conv, cs);
    else if (msgs.length === 0) cs.maxSeen = cs.last; // nothing more exists
    else if (cs.maxSeen > cs.last) this.startSync(conv, cs);
    if (cs.held.size > 0 && !cs.syncing) this.armGapTimer(conv, cs);
  }

  private deliver(m: Message, cs: ConvState): void {
    cs.last = m.seq;
    cs.own.delete(m.seq);
    this.host.positionsChanged();
    if (m.from === this.host.account && this.ownIds.has(m.client_msg_id)) return; // acked to the app already
    const row = this.row(m);
    if (m.seq > row.last_seq) {
      // Messages up to the list's last_seq are counted in its unread already.
      row.last_seq = m.seq;
      if (m.from !== this.host.account && m.seq > row.read_seq) {
        row.unread++;
        if (m.mentions?.includes(this.host.account)) row.mentions = (row.mentions ?? 0) + 1;
      }
    }
    if (!row.last || m.seq >= row.last.seq) row.last = m;
    this.host.emitMessage(m);
    this.host.emitConversation(row);
  }

  /** Moves last over our own acked seqs and delivers held pushes that have become contiguous. */
  private advance(cs: ConvState): void {
    for (;;) {
      if (cs.own.delete(cs.last + 1)) {
        cs.last++;
        this.host.positionsChanged();
        continue;
      }
      const m = cs.held.get(cs.last + 1);
      if (m) {
        cs.held.delete(m.seq);
        this.deliver(m, cs);
        continue;
      }
      for (const seq of cs.held.keys()) if (seq <= cs.last) cs.held.delete(seq);
      return;
    }
  }

  private armGapTimer(conv: string, cs: ConvState): void {
    if (cs.gapTimer) return;
    cs.gapTimer = true;
    setTimeout(() => {
      cs.gapTimer = false;
      // The gap did not fill in time: fetch what is missing.
      if (cs.held.size > 0 && !cs.syncing) this.startSync(conv, cs);
    }, this.gapWaitMs);
  }

  private startSync(conv: string, cs: ConvState): void {
    if (cs.syncing) return;
    cs.syncing = true;
    this.push({ conv, after: cs.last });
  }

  private push(j: Job): void {
    this.jobs.push(j);
    if (!this.working) void this.work();
  }

  /** Runs sync requests one at a time. */
  private async work(): Promise<void> {
    this.working = true;
    try {
      for (let j = this.jobs.shift(); j && !this.host.closed; j = this.jobs.shift()) {
        if (j.list) {
          await this.refresh().catch(() => {}); // the next connection asks again
          continue;
        }
        const page = await this.host
          .request<MessagePage>("sync", { conv_id: j.conv, after_seq: j.after, limit: this.pageSize })
          .catch(() => undefined);
        this.onSynced(j.conv, page);
      }
    } finally {
      this.working = false;
    }
  }

  private get(id: string): ConvState {
    let cs = this.states.get(id);
    if (!cs) this.states.set(id, (cs = newState(0)));
    return cs;
  }

  private row(m: Message): Conversation {
    let row = this.rows.get(m.conv_id);
    if (!row) {
      const peer = m.conv_type === ConvType.P2P ? (m.from === this.host.account ? m.to : m.from) : m.to;
      row = { conv_id: m.conv_id, conv_type: m.conv_type, peer, last_seq: 0, read_seq: 0, unread: 0 };
      this.rows.set(m.conv_id, row);
    }
    return row;
  }

  private remember(id: string): void {
    if (this.ownIds.has(id)) return;
    this.ownIds.add(id);
    this.ownOrder.push(id);
    if (this.ownOrder.length > ownRing) this.ownIds.delete(this.ownOrder.shift()!);
  }
}

function newState(last: number): ConvState {
  return { last, maxSeen: last, own: new Set(), syncing: false, held: new Map(), gapTimer: false };
}
