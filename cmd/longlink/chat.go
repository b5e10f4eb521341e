package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/link"
	"github.com/longlink/longlink/core/sdk"
)

func init() {
	register(command{name: "chat", summary: "a terminal chat client (Go SDK over Link)", run: runChat})
}

const chatHelp = `commands:
  <text>                 send to the current conversation
  /to <account>          talk to an account
  /group <group id>      talk in a group
  /create <name> <a,b>   create a group with members a and b
  /add <a,b>, /remove <a,b>  change the current group's members
  /list                  conversations with unread counts
  /history [n]           the last n messages of the current conversation
  /read                  mark the current conversation read
  /recall <msg id>       withdraw a message you sent
  /name <name>           change your profile name
  /profile <a,b>         show profiles
  /friend <account> [message]  ask to be friends
  /accept <account>, /reject <account>, /unfriend <account>
  /friends               your friends and pending requests
  /block <account>, /unblock <account>
  /mute, /unmute         silence offline push for the current conversation
  /push <provider> <token>  register this device's push token (apns, fcm, webhook)
  /rename <name>         rename the current group (owner, managers)
  /manager <account>, /member <account>  set a role in the current group (owner)
  /transfer <account>    hand the current group to a member (owner)
  /super <group id>      talk in a super-group (up to 100,000 members)
  /screate <name> <a,b>  create a super-group with members a and b
  /sadd <a,b>, /sremove <a,b>  change the current super-group's members (owner)
  /smembers [after]      a page of the current super-group's members
  /enter <room> [token]  enter a chatroom and talk in it (without a token,
                         one is asked from the dev server API, as the app's server would)
  /leave [room]          leave a chatroom (default: the current one)
  /rooms                 the chatrooms you are in (entered again after a reconnect)
  /quit                  leave`

func runChat(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	dir := fs.String("dir", ".longlink", "`directory` where longlink dev wrote client.json")
	file := fs.String("client-file", "", "client `file` (default <dir>/client.json)")
	user := fs.String("user", "", "`account` to log in as (its token comes from the client file unless -token is set)")
	token := fs.String("token", "", "login `token` (overrides the client file)")
	to := fs.String("to", "", "`account` to talk to first")
	direct := fs.Bool("direct", false, "connect to the core gateway directly instead of through the edge")
	addr := fs.String("addr", "", "comma-separated Link `host:port` addresses (override the client file)")
	device := fs.String("device", "pc", "device `type` (phone, pad, pc…): the multi-device policy kicks an older session of the same type")
	appkey := fs.String("appkey", "", "`appkey` (overrides the client file)")
	keyID := fs.String("key-id", "", "server key `id` (overrides the client file)")
	pub := fs.String("public-key", "", "server public `key`, base64 (overrides the client file)")
	server := fs.String("server", "", "server HTTP API `URL` of longlink dev, asked for chatroom entry tokens as its demo app (default: where dev in -dir serves it, else http://127.0.0.1:7712)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("-user is required")
	}
	path := *file
	if path == "" {
		path = filepath.Join(*dir, "client.json")
	}
	cf, ferr := loadChatClientFile(path)
	if cf == nil {
		cf = &sdk.ClientFile{}
	}
	if *appkey != "" {
		cf.AppKey = *appkey
	}
	if *keyID != "" || *pub != "" {
		cf.Keys = []sdk.ClientKey{{ID: *keyID, PublicKey: *pub}}
	}
	addrs := cf.Addresses
	if *direct && len(cf.Direct) > 0 {
		addrs = cf.Direct
	}
	if *addr != "" {
		addrs = strings.Split(*addr, ",")
	}
	tok := *token
	if tok == "" {
		for _, u := range cf.Users {
			if u.Account == *user {
				tok = u.Token
			}
		}
	}
	keys, kerr := cf.ServerKeys()
	if len(addrs) == 0 || tok == "" || kerr != nil || cf.AppKey == "" {
		if ferr != nil {
			return fmt.Errorf("%w (start `longlink dev` first, or pass -addr, -appkey, -token, -key-id and -public-key)", ferr)
		}
		return fmt.Errorf("need addresses, appkey, a token for %q and a server key (client file %s)", *user, path)
	}
	roomToken := func(ctx context.Context, room string) (string, error) {
		return devRoomToken(ctx, *dir, *server, *user, room)
	}
	c, err := sdk.New(sdk.Config{
		Addresses: addrs, ServerKeys: keys, AppKey: cf.AppKey, Account: *user, Token: tok,
		DeviceType: *device, SDKVersion: sdk.Version + "-chat", RoomToken: roomToken,
	})
	if err != nil {
		return err
	}
	c.Start()
	defer c.Close()
	out := bufio.NewWriter(os.Stdout)
	printf := func(format string, a ...any) {
		fmt.Fprintf(out, format+"\n", a...)
		out.Flush()
	}
	printf("connecting to %s as %s … (/help for commands)", strings.Join(addrs, ", "), *user)

	// cur is the conversation typed lines go to.
	type target struct {
		convType int
		to       string
	}
	cur := target{imapi.ConvP2P, *to}
	convID := func() string {
		switch cur.convType {
		case imapi.ConvGroup:
			return imapi.GroupConvID(cur.to)
		case imapi.ConvSuper:
			return imapi.SuperConvID(cur.to)
		case convRoom:
			return "" // a room is no conversation: conversation commands are refused
		}
		return imapi.P2PConvID(*user, cur.to)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-c.Events():
			if !ok {
				return nil
			}
			switch ev.Kind {
			case sdk.EventMessage:
				m := ev.Message
				where := ""
				if m.ConvType == imapi.ConvGroup || m.ConvType == imapi.ConvSuper {
					where = " in " + m.To
				}
				printf("[seq %d] %s%s: %s", m.Seq, m.From, where, messageText(m))
			case sdk.EventReceipt:
				printf("  (%s read up to seq %d)", ev.Receipt.Reader, ev.Receipt.Seq)
			case sdk.EventRecalled:
				printf("  (%s recalled message %s, seq %d)", ev.Recalled.By, ev.Recalled.MsgID, ev.Recalled.Seq)
			case sdk.EventGroup:
				printf("  (group %s: %s by %s %v)", ev.Group.GroupID, ev.Group.Kind, ev.Group.By, ev.Group.Members)
			case sdk.EventPush, sdk.EventRoom:
				if se, ok := sdk.SuperEventOf(ev); ok {
					printf("  (super-group %s: %s by %s)", se.GroupID, se.Kind, se.By)
				} else {
					printRoomEvent(ev, printf)
				}
			case sdk.EventRelationsReset:
				printf("  (relationships reloaded: %d friends, %d blocked; notices were missed)", len(ev.Relations.Friends), len(ev.Relations.Blacklist))
			case sdk.EventNotice:
				n := ev.Notice
				printf("  (notice %d: %s %s → %s %s%s)", n.Seq, n.Kind, n.From, n.To, n.Message, n.ConvID)
			case sdk.EventProfile:
				printf("  (%s is now %q)", ev.Profile.Account, ev.Profile.Name)
			case sdk.EventKicked:
				printf("  (server closed the session: %s)", ev.Kick.Reason)
			case sdk.EventState:
				if ev.Err != nil && ev.State != sdk.StateConnected {
					printf("  (%s: %v)", ev.State, ev.Err)
				} else {
					printf("  (%s)", ev.State)
				}
				if ev.State == sdk.StateStopped {
					return ev.Err
				}
			case sdk.EventSendFailed:
				printf("  (message %s refused: %v)", ev.ClientMsgID, ev.Err)
			}
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := chatCommand(rctx, c, line, printf, &cur.convType, &cur.to, convID, roomToken)
			cancel()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				printf("  error: %v", err)
			}
		}
	}
}

func chatCommand(ctx context.Context, c *sdk.Client, line string, printf func(string, ...any), convType *int, to *string, convID func() string,
	roomToken func(context.Context, string) (string, error)) error {
	if !strings.HasPrefix(line, "/") {
		if *to == "" {
			return errors.New("no conversation: /to <account>, /group <id> or /enter <room> first")
		}
		if *convType == convRoom {
			ack, err := c.RoomSendText(ctx, *to, line)
			if err != nil {
				return err
			}
			printf("  (sent to room %s, seq %d)", *to, ack.Seq)
			return nil
		}
		ack, err := c.SendText(ctx, *convType, *to, line)
		if err != nil {
			return err
		}
		printf("  (sent, seq %d, id %s)", ack.Seq, ack.MsgID)
		return nil
	}
	f := strings.Fields(line)
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch f[0] {
	case "/help":
		printf("%s", chatHelp)
	case "/quit", "/exit":
		return io.EOF
	case "/to":
		*convType, *to = imapi.ConvP2P, arg(1)
		printf("  talking to %s", *to)
	case "/group":
		*convType, *to = imapi.ConvGroup, arg(1)
		printf("  talking in group %s", *to)
	case "/create":
		var g imapi.Group
		if err := c.Request(ctx, imapi.OpGroupCreate, imapi.GroupCreateReq{Name: arg(1), Members: splitList(arg(2))}, &g); err != nil {
			return err
		}
		*convType, *to = imapi.ConvGroup, g.GroupID
		printf("  created group %s (%s) with %v; talking in it", g.GroupID, g.Name, g.Members)
	case "/add", "/remove":
		op := imapi.OpGroupAdd
		if f[0] == "/remove" {
			op = imapi.OpGroupRemove
		}
		return c.Request(ctx, op, imapi.GroupMembersReq{GroupID: *to, Members: splitList(arg(1))}, nil)
	case "/list":
		var l imapi.ConvListResp
		if err := c.Request(ctx, imapi.OpConvList, nil, &l); err != nil {
			return err
		}
		for _, cv := range l.Conversations {
			printf("  %-30s last seq %d, unread %d", cv.ConvID, cv.LastSeq, cv.Unread)
		}
	case "/history":
		n := 20
		fmt.Sscan(arg(1), &n)
		var r imapi.SyncResp
		if err := c.Request(ctx, imapi.OpHistory, imapi.HistoryReq{ConvID: convID(), Limit: n}, &r); err != nil {
			return err
		}
		for i := len(r.Messages) - 1; i >= 0; i-- {
			m := &r.Messages[i]
			printf("  [seq %d] %s: %s", m.Seq, m.From, messageText(m))
		}
	case "/read":
		var l imapi.ConvListResp
		if err := c.Request(ctx, imapi.OpConvList, nil, &l); err != nil {
			return err
		}
		for _, cv := range l.Conversations {
			if cv.ConvID == convID() {
				return c.Request(ctx, imapi.OpRead, imapi.ReadReq{ConvID: cv.ConvID, Seq: cv.LastSeq}, nil)
			}
		}
	case "/recall":
		return c.Request(ctx, imapi.OpRecall, imapi.RecallReq{ConvID: convID(), MsgID: arg(1)}, nil)
	case "/super", "/screate", "/sadd", "/sremove", "/smembers":
		return superCommand(ctx, c, f, printf, convType, to)
	case "/enter", "/leave", "/rooms":
		return roomCommand(ctx, c, f, printf, convType, to, roomToken)
	default:
		return relationCommand(ctx, c, f, printf, convID)
	}
	return nil
}

// relationCommand runs the profile, friend, blacklist, mute and group role
// commands.
func relationCommand(ctx context.Context, c *sdk.Client, f []string, printf func(string, ...any), convID func() string) error {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	groupID := func() (string, error) {
		typ, g, _, ok := imapi.ParseConvID(convID())
		if !ok || typ != imapi.ConvGroup {
			return "", errors.New("not in a group: /group <id> first")
		}
		return g, nil
	}
	switch f[0] {
	case "/name":
		name := strings.Join(f[1:], " ")
		_, err := c.UpdateProfile(ctx, imapi.ProfileUpdateReq{Name: &name})
		return err
	case "/profile":
		ps, err := c.Profiles(ctx, splitList(arg(1))...)
		for _, p := range ps {
			printf("  %s: %q %s %s", p.Account, p.Name, p.Avatar, p.Ext)
		}
		return err
	case "/friend":
		accepted, err := c.RequestFriend(ctx, arg(1), strings.Join(f[min(2, len(f)):], " "))
		if err == nil && accepted {
			printf("  (%s had asked you too: friends now)", arg(1))
		}
		return err
	case "/accept":
		return c.AcceptFriend(ctx, arg(1), "")
	case "/reject":
		return c.RejectFriend(ctx, arg(1), "")
	case "/unfriend":
		return c.DeleteFriend(ctx, arg(1))
	case "/friends":
		fs, err := c.Friends(ctx)
		if err != nil {
			return err
		}
		for _, fr := range fs {
			printf("  friend %s %s", fr.Account, fr.Alias)
		}
		rs, err := c.FriendRequests(ctx)
		for _, r := range rs {
			printf("  request %s → %s %q", r.From, r.To, r.Message)
		}
		return err
	case "/push":
		if arg(1) == "" || arg(2) == "" {
			return errors.New("/push <provider> <token>")
		}
		if err := c.RegisterPushToken(ctx, arg(1), arg(2), false); err != nil {
			return err
		}
		printf("  (push token registered: while you are offline, messages reach it)")
		return nil
	case "/block":
		return c.Block(ctx, arg(1))
	case "/unblock":
		return c.Unblock(ctx, arg(1))
	case "/mute":
		return c.Mute(ctx, imapi.MuteReq{ConvID: convID()})
	case "/unmute":
		return c.Unmute(ctx, imapi.MuteReq{ConvID: convID()})
	case "/rename":
		g, err := groupID()
		if err != nil {
			return err
		}
		name := strings.Join(f[1:], " ")
		_, err = c.UpdateGroup(ctx, imapi.GroupUpdateReq{GroupID: g, Name: &name})
		return err
	case "/manager", "/member":
		g, err := groupID()
		if err != nil {
			return err
		}
		return c.SetGroupRole(ctx, g, arg(1), strings.TrimPrefix(f[0], "/"))
	case "/transfer":
		g, err := groupID()
		if err != nil {
			return err
		}
		return c.TransferGroup(ctx, g, arg(1))
	}
	return fmt.Errorf("unknown command %s (/help)", f[0])
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func messageText(m *imapi.Message) string {
	if m.Recalled {
		return "(recalled)"
	}
	var b struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(m.Body, &b) == nil && b.Text != "" {
		return b.Text
	}
	return fmt.Sprintf("(%s) %s", m.Type, m.Body)
}

// loadChatClientFile reads sdk.ClientFile, and also understands the field
// names of the dev command's own summary (AppKey, Tokens, LinkAddr, …).
func loadChatClientFile(path string) (*sdk.ClientFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cf sdk.ClientFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(cf.Addresses) > 0 {
		return &cf, nil
	}
	var dev struct {
		AppKey    string
		Tokens    map[string]string
		LinkAddr  string
		EdgeLink  string
		KeyID     string
		PublicKey string
	}
	if err := json.Unmarshal(b, &dev); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cf = sdk.ClientFile{AppKey: dev.AppKey, Keys: []sdk.ClientKey{{ID: dev.KeyID, PublicKey: dev.PublicKey}}}
	if dev.EdgeLink != "" {
		cf.Addresses = []string{dev.EdgeLink}
	}
	if dev.LinkAddr != "" {
		cf.Direct = []string{dev.LinkAddr}
		if len(cf.Addresses) == 0 {
			cf.Addresses = cf.Direct
		}
	}
	for a, t := range dev.Tokens {
		cf.Users = append(cf.Users, sdk.ClientUser{Account: a, Token: t})
	}
	if _, err := link.DecodeKey(dev.PublicKey); err != nil {
		return &cf, fmt.Errorf("%s: %w", path, err)
	}
	return &cf, nil
}
