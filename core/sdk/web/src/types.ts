// The IM contract's bodies (core/imapi), exactly as they travel: field names
// are the JSON names (snake_case) the server sends and the server HTTP API
// and LINK.md document, so that nothing is renamed between the wire, the
// docs and the application.

/** Conversation types (`conv_type`). */
export const ConvType = {
  /** A 1:1 conversation; its id is `p:<a>:<b>` with the accounts sorted. */
  P2P: 1,
  /** A group; its id is `g:<group id>`. */
  Group: 2,
  /** A chatroom (room messages only; rooms have no conversation). */
  Room: 3,
  /** A super-group (read diffusion); its id is `s:<group id>`. */
  Super: 4,
} as const;
/** One of {@link ConvType}'s values. */
export type ConvTypeValue = (typeof ConvType)[keyof typeof ConvType];

/** The id of the 1:1 conversation between two accounts (both sides compute the same). */
export function p2pConvId(a: string, b: string): string {
  return a < b ? `p:${a}:${b}` : `p:${b}:${a}`;
}

/** The id of a group's conversation. */
export function groupConvId(groupId: string): string {
  return `g:${groupId}`;
}

/** The id of a super-group's conversation. */
export function superConvId(groupId: string): string {
  return `s:${groupId}`;
}

/** The answer of a successful login. */
export interface LoginResp {
  session_id: string;
  /** Unix milliseconds. */
  server_time: number;
  /** The client sends a heartbeat at this interval. */
  heartbeat_sec: number;
}

/** Why the server is closing the session. */
export interface Kick {
  code: number;
  reason?: string;
  by_device?: string;
}

/** A message to send; `client_msg_id` makes the send idempotent (the SDK fills it in). */
export interface SendReq {
  conv_type: number;
  /** An account, a group id or a super-group id. */
  to: string;
  client_msg_id?: string;
  /** text, custom, image…; default "text". */
  type?: string;
  /** Any JSON value; text messages carry `{"text": "…"}`. */
  body: unknown;
  mentions?: string[];
}

/** The server's acknowledgement of a durable message. */
export interface SendAck {
  msg_id: string;
  conv_id: string;
  seq: number;
  /** Unix milliseconds, server clock. */
  time: number;
}

/** A stored message, as pushed and synced. */
export interface Message {
  msg_id: string;
  conv_id: string;
  conv_type: number;
  from: string;
  from_device?: string;
  to: string;
  seq: number;
  client_msg_id: string;
  type: string;
  body: unknown;
  mentions?: string[];
  time: number;
  recalled?: boolean;
}

/** A page of messages (sync: oldest first; history: newest first). */
export interface MessagePage {
  messages: Message[];
  has_more: boolean;
}

/** The peer of a 1:1 conversation read it up to `seq`. */
export interface Receipt {
  conv_id: string;
  reader: string;
  seq: number;
}

/** A message was withdrawn. */
export interface Recalled {
  conv_id: string;
  msg_id: string;
  seq: number;
  by: string;
}

/** One row of the conversation list. */
export interface Conversation {
  conv_id: string;
  conv_type: number;
  /** The other account, or the group id. */
  peer: string;
  last_seq: number;
  read_seq: number;
  unread: number;
  /** Unread messages that mention this account. */
  mentions?: number;
  last?: Message;
  muted?: boolean;
}

/** A group. */
export interface Group {
  group_id: string;
  name: string;
  owner: string;
  members: string[];
  created: number;
  managers?: string[];
  announcement?: string;
  avatar?: string;
  anyone_updates?: boolean;
  invite_mode?: string;
}

/** Changes to a group (fields left out are kept). */
export interface GroupUpdate {
  group_id: string;
  name?: string;
  announcement?: string;
  avatar?: string;
  anyone_updates?: boolean;
  invite_mode?: "all" | "managers";
}

/** A group's membership or profile changed. */
export interface GroupEvent {
  group_id: string;
  /** created, added, removed, left, dismissed, updated, role, transferred */
  kind: string;
  by: string;
  members?: string[];
  role?: string;
  group?: Group;
}

/** A super-group (members are paged separately). */
export interface SuperGroup {
  group_id: string;
  name: string;
  owner: string;
  count: number;
  max_members: number;
  last_seq: number;
  created: number;
}

/** This account joined or left a super-group, or it was dismissed. */
export interface SuperEvent {
  group_id: string;
  /** joined, removed, left, dismissed */
  kind: string;
  by: string;
}

/** A user's public profile. */
export interface Profile {
  account: string;
  name: string;
  avatar?: string;
  ext?: Record<string, unknown>;
  updated?: number;
}

/** A friend. */
export interface Friend {
  account: string;
  alias?: string;
  since: number;
}

/** A pending friend request. */
export interface FriendRequest {
  from: string;
  to: string;
  message?: string;
  time: number;
}

/** One entry of the account's notice stream (relationship and profile changes). */
export interface Notice {
  seq: number;
  /** friend.request, friend.added, friend.rejected, friend.deleted, friend.alias, blacklist.added, blacklist.removed, mute.added, mute.removed, profile.updated, system */
  kind: string;
  from?: string;
  to?: string;
  message?: string;
  alias?: string;
  conv_id?: string;
  profile?: Profile;
  body?: unknown;
  time: number;
}

/** The account's relationships loaded afresh (see the `relationsReset` event). */
export interface Relations {
  friends: Friend[];
  requests: FriendRequest[];
  blacklist: string[];
  mutes: string[];
}

/** A chatroom. */
export interface RoomInfo {
  room_id: string;
  name: string;
  owner: string;
  muted: boolean;
  guests_can_send: boolean;
  /** Sessions in the room. */
  members: number;
  last_seq: number;
  closed?: boolean;
  created: number;
}

/** The answer of a room enter. */
export interface RoomEnterResp {
  room: RoomInfo;
  role: string;
  /** Oldest first. */
  history: RoomMessage[];
}

/** A chatroom message. */
export interface RoomMessage {
  room_id: string;
  msg_id: string;
  seq: number;
  from: string;
  client_msg_id?: string;
  type: string;
  body: unknown;
  time: number;
}

/** The acknowledgement of a room message. */
export interface RoomSendAck {
  msg_id: string;
  seq: number;
  time: number;
}

/** One account in a room. */
export interface RoomMember {
  account: string;
  role: string;
  muted_until?: number;
}

/** A page of room members; `next` is the `after` of the next page ("" at the end). */
export interface RoomMembersPage {
  members: RoomMember[];
  next?: string;
}

/** A change in a room: role, muted, unmuted, room_muted, room_unmuted, kicked, closed. */
export interface RoomEvent {
  room_id: string;
  kind: string;
  account?: string;
  by?: string;
  role?: string;
  until?: number;
  reason?: string;
}

/** Call signal kinds, in the order of a call's life. */
export const CallKind = {
  Invite: "invite",
  Ringing: "ringing",
  Accept: "accept",
  Reject: "reject",
  Hangup: "hangup",
  Candidate: "candidate",
} as const;

/** One signalling step to the other party of a call. */
export interface CallSignal {
  call_id: string;
  to: string;
  kind: string;
  media?: string;
  /** SDP, an ICE candidate or a reason: opaque to the server. */
  payload?: unknown;
}

/** A call signal as it arrives. */
export interface CallEvent {
  call_id: string;
  kind: string;
  from: string;
  from_device?: string;
  to: string;
  media?: string;
  payload?: unknown;
  time: number;
}

/** TURN credentials; `servers` map onto WebRTC's RTCIceServer (`{urls, username, credential: password}`). */
export interface TurnCredentials {
  username: string;
  password: string;
  /** Unix seconds. */
  expires: number;
  ttl_sec: number;
  servers: { urls: string[]; site?: string }[];
}

/** The LBS's answer (lbs/lbsapi.Answer); the SDK uses its `weblink` entry points. */
export interface LBSAnswer {
  appkey: string;
  ttl: number;
  weblink?: { id: string; site?: string; url?: string; fallback?: boolean }[];
  [key: string]: unknown;
}
