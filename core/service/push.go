package service

import (
	"context"
	"time"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/service/internal/node"
	"github.com/longlink/longlink/core/store"
)

// Push settings: a device's push token and the account's do-not-disturb
// window. core/push reads them when it sends offline notifications.

const maxPushToken = 1024

func (s *Service) pushRegister(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.PushTokenReq
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return nil, s.RegisterPushToken(ctx, sess.AppKey, sess.Account, sess.DeviceID, &req)
}

// RegisterPushToken sets the push token of an account's device (the server
// API calls it directly).
func (s *Service) RegisterPushToken(ctx context.Context, appkey, account, deviceID string, req *imapi.PushTokenReq) error {
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
	if err := s.st.PutPushToken(ctx, store.PushToken{
		AppKey: appkey, Account: account, DeviceID: deviceID, Provider: req.Provider, Token: req.Token,
		Sandbox: req.Sandbox, Updated: s.now(),
	}); err != nil {
		return node.StoreErr(err, "push token")
	}
	return nil
}

func (s *Service) pushUnregister(ctx context.Context, sess *imapi.Session, _ []byte) (any, error) {
	if err := s.st.DeletePushToken(ctx, sess.AppKey, sess.Account, sess.DeviceID); err != nil {
		return nil, node.StoreErr(err, "push token")
	}
	return nil, nil
}

func (s *Service) pushSettings(ctx context.Context, sess *imapi.Session, _ []byte) (any, error) {
	return s.PushSettings(ctx, sess.AppKey, sess.Account)
}

// PushSettings returns an account's push settings.
func (s *Service) PushSettings(ctx context.Context, appkey, account string) (*imapi.PushSettings, error) {
	ps, err := s.st.PushSettings(ctx, appkey, account)
	if err != nil {
		return nil, node.StoreErr(err, "push settings")
	}
	return &imapi.PushSettings{DND: imapi.DND{Enabled: ps.DNDEnabled, Start: ps.DNDStart, End: ps.DNDEnd, TimeZone: ps.DNDZone}}, nil
}

func (s *Service) pushSetSettings(ctx context.Context, sess *imapi.Session, body []byte) (any, error) {
	var req imapi.PushSettings
	if err := node.Decode(body, &req); err != nil {
		return nil, err
	}
	return s.SetPushSettings(ctx, sess.AppKey, sess.Account, &req)
}

// SetPushSettings replaces an account's push settings.
func (s *Service) SetPushSettings(ctx context.Context, appkey, account string, req *imapi.PushSettings) (*imapi.PushSettings, error) {
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
	if err := s.st.PutPushSettings(ctx, appkey, account, store.PushSettings{
		DNDEnabled: d.Enabled, DNDStart: d.Start, DNDEnd: d.End, DNDZone: d.TimeZone,
	}); err != nil {
		return nil, node.StoreErr(err, "push settings")
	}
	return &imapi.PushSettings{DND: d}, nil
}
