package buswire

import (
	"strings"

	"github.com/longlink/longlink/core/imapi"
)

// Subjects. Appkeys, accounts, group and room ids and cluster names are
// validated to subject-safe names (imapi.ValidName) at creation, so they
// can be subject tokens as they are.

// ServiceQueue is the NATS queue group of app service nodes.
const ServiceQueue = "svc"

// DefaultCluster is the subject prefix of the shared app service cluster.
// Dedicated clusters of large customers use their own name.
const DefaultCluster = "default"

// ServiceSubject is where requests for op go: "ll.<cluster>.svc.<service>_<command>"
// (op.Name() with its dots made underscores).
func ServiceSubject(cluster string, op imapi.Op) string {
	return "ll." + cluster + ".svc." + strings.ReplaceAll(op.Name(), ".", "_")
}

// UserSubject carries Pushes to every session of one account.
func UserSubject(appkey, account string) string {
	return "ll.user." + appkey + "." + account
}

// Room subjects. A gateway holding members of a room subscribes to
// RoomSubject(appkey, room) + ".*"; services publish imapi.RoomMessage
// bodies on the RoomMessageSuffix subject and imapi.RoomEvent bodies on
// RoomEventSuffix.
const (
	RoomMessageSuffix = ".m"
	RoomEventSuffix   = ".e"
)

// RoomSubject is the subject prefix of one room.
func RoomSubject(appkey, roomID string) string {
	return "ll.room." + appkey + "." + roomID
}

// GatewaySubject carries GatewayAnnounce messages: every gateway announces
// itself periodically, so that the services know which gateways are alive,
// their entry addresses and how full they are (chatroom placement).
const GatewaySubject = "ll.gateways"

// SuperSubject carries a super-group's pushes to the gateways holding its
// online members. A gateway subscribes to it while it holds at least one
// session of a member (it learns a session's super-groups from the login
// answer and from imapi.SuperEvent pushes on the account's subject).
func SuperSubject(appkey, groupID string) string {
	return SuperSubjectPrefix + appkey + "." + groupID
}

// SuperSubjectPrefix starts every SuperSubject.
const SuperSubjectPrefix = "ll.super."
