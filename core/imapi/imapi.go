// Package imapi is the client contract of the IM core: what every
// client-facing transport (Link over TCP, WebLink over Socket.IO) carries,
// what the SDKs and other-language clients read. The envelopes these bodies
// travel in between gateways and app services, and the NATS subjects, are
// internal to the core (core/internal/buswire).
//
// A request is identified by an Op (service, command). Link carries the two
// numbers in its frame header; WebLink uses Op.Name() as the Socket.IO event
// name. Bodies are JSON objects of the types below, identical on both
// transports, so an SDK behaves the same whichever transport it uses.
package imapi

import "fmt"

// Op names one request or push: a service and a command within it.
type Op struct {
	Service uint8
	Command uint8
}

// Services.
const (
	SvcSession uint8 = 1 // login, heartbeat, logout, kick
	SvcMsg     uint8 = 2 // messages, sync, history, receipts, recall, conversations
	SvcGroup   uint8 = 3 // groups
	SvcUser    uint8 = 4 // profiles and relationships
	SvcRoom    uint8 = 5 // chatrooms
	SvcCall    uint8 = 6 // A/V: TURN credentials and call signalling
)

// Requests from clients (and their responses), and pushes from the server.
var (
	OpLogin     = Op{SvcSession, 1} // LoginReq → LoginResp
	OpHeartbeat = Op{SvcSession, 2} // empty → empty
	OpLogout    = Op{SvcSession, 3} // empty → empty
	OpKick      = Op{SvcSession, 4} // push: Kick

	OpSend     = Op{SvcMsg, 1} // SendReq → SendAck
	OpPush     = Op{SvcMsg, 2} // push: Message
	OpSync     = Op{SvcMsg, 3} // SyncReq → SyncResp
	OpHistory  = Op{SvcMsg, 4} // HistoryReq → SyncResp
	OpRead     = Op{SvcMsg, 5} // ReadReq → empty; the peer gets OpReceipt
	OpReceipt  = Op{SvcMsg, 6} // push: Receipt
	OpRecall   = Op{SvcMsg, 7} // RecallReq → empty; members get OpRecalled
	OpRecalled = Op{SvcMsg, 8} // push: Recalled
	OpConvList = Op{SvcMsg, 9} // empty → ConvListResp

	OpGroupCreate  = Op{SvcGroup, 1} // GroupCreateReq → Group
	OpGroupAdd     = Op{SvcGroup, 2} // GroupMembersReq → empty
	OpGroupRemove  = Op{SvcGroup, 3} // GroupMembersReq → empty
	OpGroupInfo    = Op{SvcGroup, 4} // GroupRef → Group
	OpGroupList    = Op{SvcGroup, 5} // empty → GroupListResp
	OpGroupLeave   = Op{SvcGroup, 6} // GroupRef → empty
	OpGroupDismiss = Op{SvcGroup, 7} // GroupRef → empty
	OpGroupEvent   = Op{SvcGroup, 8} // push: GroupEvent
)

var opNames = map[Op]string{
	OpLogin: "login", OpHeartbeat: "heartbeat", OpLogout: "logout", OpKick: "kick",
	OpSend: "send", OpPush: "message", OpSync: "sync", OpHistory: "history",
	OpRead: "read", OpReceipt: "receipt", OpRecall: "recall", OpRecalled: "recalled",
	OpConvList:    "conversations",
	OpGroupCreate: "group.create", OpGroupAdd: "group.add", OpGroupRemove: "group.remove",
	OpGroupInfo: "group.info", OpGroupList: "group.list", OpGroupLeave: "group.leave",
	OpGroupDismiss: "group.dismiss", OpGroupEvent: "group.event",
}

var opByName = func() map[string]Op {
	m := make(map[string]Op, len(opNames))
	for op, n := range opNames {
		m[n] = op
	}
	return m
}()

// Register adds an op defined by a later service (rooms, relationships, calls)
// to the name table. It panics on a clash, at init time.
func Register(op Op, name string) {
	if prev, ok := opNames[op]; ok {
		panic(fmt.Sprintf("imapi: op %v already registered as %q", op, prev))
	}
	if _, ok := opByName[name]; ok {
		panic(fmt.Sprintf("imapi: name %q already registered", name))
	}
	opNames[op] = name
	opByName[name] = op
}

// Name is the op's stable name: the Socket.IO event name (and, inside the
// core, the subject token of its service request).
func (o Op) Name() string {
	if n, ok := opNames[o]; ok {
		return n
	}
	return fmt.Sprintf("op.%d.%d", o.Service, o.Command)
}

func (o Op) String() string { return o.Name() }

// OpByName resolves a name to its op.
func OpByName(name string) (Op, bool) {
	op, ok := opByName[name]
	return op, ok
}
