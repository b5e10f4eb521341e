package sdk

import (
	"context"

	"github.com/longlink/longlink/core/imapi"
)

// RegisterPushToken gives the server this device's push token (from APNs,
// FCM, or the app's own push channel): while the account has no online
// device, new messages reach this device as notifications. The device id
// of Config identifies the device; registering again replaces the token.
func (c *Client) RegisterPushToken(ctx context.Context, provider, token string, sandbox bool) error {
	return c.Request(ctx, imapi.OpPushRegister, &imapi.PushTokenReq{Provider: provider, Token: token, Sandbox: sandbox}, nil)
}

// UnregisterPushToken stops notifications to this device (call it before
// logging out for good).
func (c *Client) UnregisterPushToken(ctx context.Context) error {
	return c.Request(ctx, imapi.OpPushUnregister, nil, nil)
}

// PushSettings returns the account's push settings (do-not-disturb).
func (c *Client) PushSettings(ctx context.Context) (imapi.PushSettings, error) {
	var ps imapi.PushSettings
	err := c.Request(ctx, imapi.OpPushSettings, nil, &ps)
	return ps, err
}

// SetPushSettings replaces the account's push settings, for all its
// devices: e.g. imapi.DND{Enabled: true, Start: 22*60, End: 7*60,
// TimeZone: "Europe/Paris"} silences notifications from 22:00 to 07:00
// Paris time (or sends them silently, as the app is configured).
func (c *Client) SetPushSettings(ctx context.Context, ps imapi.PushSettings) (imapi.PushSettings, error) {
	var out imapi.PushSettings
	err := c.Request(ctx, imapi.OpPushSetSettings, &ps, &out)
	return out, err
}
