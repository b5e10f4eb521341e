import type { Friend, FriendRequest, Notice, Relations } from "./types.js";

/** What the notice stream needs from the client. */
export interface NoticeHost {
  request<T>(op: string, body?: unknown): Promise<T>;
  emitNotice(n: Notice): void;
  emitRelationsReset(r: Relations): void;
  positionsChanged(): void;
}

interface NoticePage {
  notices?: Notice[];
  has_more?: boolean;
  reset?: boolean;
}

/**
 * The account's notice stream (core/sdk user.go): relationship and profile
 * changes, delivered once each and in stream order. Pushed notices are
 * delivered in order; a gap or a (re)connection fetches those after the last
 * delivered one (`notice.sync`). When the server no longer keeps every
 * notice since then, or is behind the client (its data wiped or restored),
 * the relationships are loaded afresh and delivered as `relationsReset`
 * before the notices, and the server's position is taken.
 */
export class NoticeStream {
  /** Last notice seq delivered. */
  last: number;
  private maxSeen: number;
  private syncing = false;
  /** A push came during the running sync (which may have been answered before it): another follows. */
  private missed = false;

  constructor(
    private host: NoticeHost,
    last: number,
    private pageSize: number,
  ) {
    this.last = last;
    this.maxSeen = last;
  }

  onConnected(): void {
    this.sync();
  }

  onPush(n: Notice): void {
    if (!n || typeof n.seq !== "number" || n.seq <= 0) return;
    this.maxSeen = Math.max(this.maxSeen, n.seq);
    if (n.seq <= this.last) return; // a duplicate
    if (n.seq === this.last + 1 && !this.syncing) {
      this.deliver(n);
      return;
    }
    if (this.syncing) this.missed = true;
    else this.sync(); // a gap: fetch what is missing
  }

  private deliver(n: Notice): void {
    this.last = n.seq;
    this.host.positionsChanged();
    this.host.emitNotice(n);
  }

  private sync(): void {
    if (this.syncing) return;
    this.syncing = true;
    this.missed = false;
    void this.fetch(this.last);
  }

  private async fetch(after: number): Promise<void> {
    let page: NoticePage;
    let reset: Relations | undefined;
    try {
      page = await this.host.request<NoticePage>("notice.sync", { after_seq: after, limit: this.pageSize });
      // Loaded after the page was read: the page's notices and the following
      // ones are replayed over a copy at least as new.
      if (page.reset) reset = await this.loadRelations();
    } catch {
      this.syncing = false;
      return; // the next connection syncs again
    }
    this.syncing = false;
    const notices = page.notices ?? [];
    if (reset) {
      // The server's position replaces this client's: kept as it was, a
      // position ahead of a wiped server would filter out every notice to come.
      this.last = notices.length > 0 ? notices[0]!.seq - 1 : 0;
      this.host.positionsChanged();
      this.host.emitRelationsReset(reset);
    }
    // Sync answers are authoritative: a hole means the stream no longer keeps those.
    for (const n of notices) if (n.seq > this.last) this.deliver(n);
    if ((page.has_more && notices.length > 0) || (this.missed && this.maxSeen > this.last)) this.sync();
    else this.maxSeen = this.last;
  }

  private async loadRelations(): Promise<Relations> {
    const h = this.host;
    const [f, r, b, m] = await Promise.all([
      h.request<{ friends?: Friend[] }>("friend.list"),
      h.request<{ requests?: FriendRequest[] }>("friend.requests"),
      h.request<{ accounts?: string[] }>("blacklist.list"),
      h.request<{ conv_ids?: string[] }>("mute.list"),
    ]);
    return { friends: f.friends ?? [], requests: r.requests ?? [], blacklist: b.accounts ?? [], mutes: m.conv_ids ?? [] };
  }
}
