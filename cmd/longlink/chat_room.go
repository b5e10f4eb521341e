package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
)

// convRoom marks a chatroom as the current target of `longlink chat`
// (rooms are not conversations and have no conv type of their own).
const convRoom = -1

// devRoomToken asks the server API of `longlink dev` in dir, as its demo
// app, for an entry token of account into room: what an app's server
// does for its clients. `longlink chat` uses it for /enter without a token
// and to enter rooms again after a reconnect once the token has expired.
func devRoomToken(ctx context.Context, dir, server, account, room string) (string, error) {
	body, _ := json.Marshal(map[string]string{"account": account})
	out, status, err := devAPI(ctx, dir, server, http.MethodPost, "/v1/rooms/"+url.PathEscape(room)+"/tokens", body)
	if err != nil {
		return "", err
	}
	if status/100 != 2 {
		return "", fmt.Errorf("room token: %d %s", status, strings.TrimSpace(string(out)))
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.Token == "" {
		return "", fmt.Errorf("room token: bad answer %s", out)
	}
	return tok.Token, nil
}

// roomCommand runs the chatroom commands of `longlink chat`: /enter (the
// room becomes the current target: typed lines go to it), /leave, /rooms.
func roomCommand(ctx context.Context, c *sdk.Client, f []string, printf func(string, ...any), convType *int, to *string,
	tokenFor func(context.Context, string) (string, error)) error {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch f[0] {
	case "/enter":
		room, tok := arg(1), arg(2)
		if room == "" {
			return errors.New("/enter <room> [entry token]")
		}
		if tok == "" {
			t, err := tokenFor(ctx, room)
			if err != nil {
				return fmt.Errorf("%w (or pass the token the app's server issued: /enter <room> <token>)", err)
			}
			tok = t
		}
		r, err := c.RoomEnter(ctx, room, tok, 10)
		if err != nil {
			return err
		}
		*convType, *to = convRoom, room
		printf("  in room %s (%s) as %s, %d there; talking in it", r.Room.RoomID, r.Room.Name, r.Role, r.Room.Members)
		for i := range r.History {
			printRoomMessage(&r.History[i], printf)
		}
	case "/leave":
		room := arg(1)
		if room == "" && *convType == convRoom {
			room = *to
		}
		if room == "" {
			return errors.New("/leave <room>")
		}
		if err := c.RoomLeave(ctx, room); err != nil {
			return err
		}
		if *convType == convRoom && *to == room {
			*to = ""
		}
		printf("  left room %s", room)
	case "/rooms":
		printf("  in rooms %v", c.Rooms())
	}
	return nil
}

func printRoomMessage(m *imapi.RoomMessage, printf func(string, ...any)) {
	var b struct {
		Text string `json:"text"`
	}
	text := string(m.Body)
	if json.Unmarshal(m.Body, &b) == nil && b.Text != "" {
		text = b.Text
	}
	printf("[room %s seq %d] %s: %s", m.RoomID, m.Seq, m.From, text)
}

// printRoomEvent prints room pushes and re-entries; false when ev is
// neither.
func printRoomEvent(ev sdk.Event, printf func(string, ...any)) bool {
	if b, ok := sdk.RoomBatchOf(ev); ok {
		for i := range b.Messages {
			printRoomMessage(&b.Messages[i], printf)
		}
		return true
	}
	if re, ok := sdk.RoomEventOf(ev); ok {
		printf("  (room %s: %s %s by %s %s)", re.RoomID, re.Kind, re.Account, re.By, re.Reason)
		return true
	}
	if ev.Kind == sdk.EventRoom {
		r := ev.Room
		switch {
		case r.Err != nil:
			printf("  (could not enter room %s again: %v)", r.RoomID, r.Err)
		case r.Gap:
			printf("  (back in room %s; some messages sent meanwhile are gone)", r.RoomID)
		default:
			printf("  (back in room %s)", r.RoomID)
		}
		return true
	}
	return false
}
