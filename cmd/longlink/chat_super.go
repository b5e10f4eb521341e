package main

import (
	"context"
	"errors"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/sdk"
)

// superCommand runs the super-group commands of `longlink chat`.
func superCommand(ctx context.Context, c *sdk.Client, f []string, printf func(string, ...any), convType *int, to *string) error {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	current := func() (string, error) {
		if *convType != imapi.ConvSuper || *to == "" {
			return "", errors.New("not in a super-group: /super <id> first")
		}
		return *to, nil
	}
	switch f[0] {
	case "/super":
		if arg(1) == "" {
			return errors.New("/super <group id>")
		}
		*convType, *to = imapi.ConvSuper, arg(1)
		printf("  talking in super-group %s", *to)
	case "/screate":
		g, err := c.SuperCreate(ctx, arg(1), splitList(arg(2)))
		if err != nil {
			return err
		}
		*convType, *to = imapi.ConvSuper, g.GroupID
		printf("  created super-group %s (%s) with %d members (limit %d); talking in it", g.GroupID, g.Name, g.Count, g.MaxMembers)
	case "/sadd", "/sremove":
		gid, err := current()
		if err != nil {
			return err
		}
		change := c.SuperAdd
		if f[0] == "/sremove" {
			change = c.SuperRemove
		}
		r, err := change(ctx, gid, splitList(arg(1)))
		if err != nil {
			return err
		}
		printf("  %s: %v; %d members now", f[0][2:], r.Changed, r.Count)
	case "/smembers":
		gid, err := current()
		if err != nil {
			return err
		}
		p, err := c.SuperMembers(ctx, gid, arg(1), 50)
		if err != nil {
			return err
		}
		printf("  %v", p.Members)
		if p.Next != "" {
			printf("  more: /smembers %s", p.Next)
		}
	}
	return nil
}
