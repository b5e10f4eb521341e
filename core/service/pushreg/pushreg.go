// Package pushreg is the push-registration domain of the app services: a
// device's push token (APNs, FCM or the app's push webhook) and an
// account's do-not-disturb window, which core/push reads when it sends
// offline notifications.
package pushreg

import (
	"context"
	"time"

	"github.com/longlink/longlink/core/imapi"

	"github.com/longlink/longlink/core/internal/buswire"
	"github.com/longlink/longlink/core/service/internal/dispatch"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// Registry serves the push.* ops and the server API's calls of them.
type Registry struct {
	n *node.Node
}

// New builds the push-registration domain.
func New(n *node.Node) *Registry { return &Registry{n: n} }

// Routes are the push registration and settings ops.
func (s *Registry) Routes() []dispatch.Route {
	return []dispatch.Route{
		{Op: imapi.OpPushRegister, Handle: s.pushRegister},
		{Op: imapi.OpPushUnregister, Handle: s.pushUnregister},
		{Op: imapi.OpPushSettings, Handle: s.pushSettings},
		{Op: imapi.OpPushSetSettings, Handle: s.pushSetSettings},
	}
}

// Start has nothing to start.
func (s *Registry) Start(context.Context) error { return nil }

// Stop has nothing to stop.
func (s *Registry) Stop(context.Context) {}

const maxPushToken = 1024

func (s *Registry) pushRegister(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.PushTokenReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return nil, s.Register(ctx, sess.AppKey, sess.Account, sess.DeviceID, &req)
}

// Register sets the push token of an account's device (the server
// API calls it directly).
func (s *Registry) Register(ctx context.Context, appkey, account, deviceID string, req *imapi.PushTokenReq) error {
	switch req.Provider {
	case imapi.ProviderAPNs, imapi.ProviderFCM, imapi.ProviderWebhook:
	default:
		return imapi.Errorf(imapi.ErrBadRequest, "provider: %q, want apns, fcm or webhook", req.Provider)
	}
	if req.Token == "" || len(req.Token) > maxPushToken {
		return imapi.Errorf(imapi.ErrBadRequest, "token: 1-%d bytes required", maxPushToken)
	}
	if deviceID == "" || len(deviceID) > 128 {
		return imapi.Errorf(imapi.ErrBadRequest, "a device id (given at login) is required for a push token")
	}
	if err := s.n.Store.PutPushToken(ctx, store.PushToken{
		AppKey: appkey, Account: account, DeviceID: deviceID, Provider: req.Provider, Token: req.Token,
		Sandbox: req.Sandbox, Updated: s.n.Now(),
	}); err != nil {
		return node.StoreErr(err, "push token")
	}
	return nil
}

func (s *Registry) pushUnregister(ctx context.Context, sess *buswire.Session, _ []byte) (any, error) {
	if err := s.n.Store.DeletePushToken(ctx, sess.AppKey, sess.Account, sess.DeviceID); err != nil {
		return nil, node.StoreErr(err, "push token")
	}
	return nil, nil
}

func (s *Registry) pushSettings(ctx context.Context, sess *buswire.Session, _ []byte) (any, error) {
	return s.Settings(ctx, sess.AppKey, sess.Account)
}

// Settings returns an account's push settings.
func (s *Registry) Settings(ctx context.Context, appkey, account string) (*imapi.PushSettings, error) {
	ps, err := s.n.Store.PushSettings(ctx, appkey, account)
	if err != nil {
		return nil, node.StoreErr(err, "push settings")
	}
	return &imapi.PushSettings{DND: imapi.DND{Enabled: ps.DNDEnabled, Start: ps.DNDStart, End: ps.DNDEnd, TimeZone: ps.DNDZone}}, nil
}

func (s *Registry) pushSetSettings(ctx context.Context, sess *buswire.Session, body []byte) (any, error) {
	var req imapi.PushSettings
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return s.SetSettings(ctx, sess.AppKey, sess.Account, &req)
}

// SetSettings replaces an account's push settings.
func (s *Registry) SetSettings(ctx context.Context, appkey, account string, req *imapi.PushSettings) (*imapi.PushSettings, error) {
	d := req.DND
	if d.Start < 0 || d.Start > 1439 || d.End < 0 || d.End > 1439 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "dnd: start and end are minutes in 0..1439")
	}
	if len(d.TimeZone) > 64 {
		return nil, imapi.Errorf(imapi.ErrBadRequest, "dnd: timezone too long")
	}
	if d.TimeZone != "" {
		if _, err := time.LoadLocation(d.TimeZone); err != nil {
			return nil, imapi.Errorf(imapi.ErrBadRequest, "dnd: unknown timezone %q", d.TimeZone)
		}
	}
	if err := s.n.Store.PutPushSettings(ctx, appkey, account, store.PushSettings{
		DNDEnabled: d.Enabled, DNDStart: d.Start, DNDEnd: d.End, DNDZone: d.TimeZone,
	}); err != nil {
		return nil, node.StoreErr(err, "push settings")
	}
	return &imapi.PushSettings{DND: d}, nil
}
