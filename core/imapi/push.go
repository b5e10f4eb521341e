package imapi

// Offline push settings (SvcPush): a device registers the push token its
// platform gave it (APNs, FCM, or an id the app's own push webhook
// understands); a user sets do-not-disturb. When a message reaches an
// account that has no online device, each registered device gets a
// notification through its provider (core/push).
const SvcPush uint8 = 7

// Push ops (commands 1–31 are reserved for push settings).
var (
	OpPushRegister    = Op{SvcPush, 1} // PushTokenReq → empty; the session's device gets the token
	OpPushUnregister  = Op{SvcPush, 2} // empty → empty; the session's device loses its token
	OpPushSettings    = Op{SvcPush, 3} // empty → PushSettings
	OpPushSetSettings = Op{SvcPush, 4} // PushSettings → PushSettings
)

func init() {
	Register(OpPushRegister, "push.register")
	Register(OpPushUnregister, "push.unregister")
	Register(OpPushSettings, "push.settings")
	Register(OpPushSetSettings, "push.settings.set")
}

// Push providers a token belongs to.
const (
	ProviderAPNs    = "apns"    // Apple Push Notification service (HTTP/2, token auth)
	ProviderFCM     = "fcm"     // Firebase Cloud Messaging HTTP v1
	ProviderWebhook = "webhook" // the app's own push endpoint (signed POST)
)

// PushTokenReq registers the calling device's push token. A token moves:
// registering it removes it from any other device or account of the app.
type PushTokenReq struct {
	Provider string `json:"provider"` // ProviderAPNs, ProviderFCM or ProviderWebhook
	Token    string `json:"token"`
	// Sandbox sends APNs notifications to the development environment.
	Sandbox bool `json:"sandbox,omitempty"`
}

// DND is a daily do-not-disturb window in a time zone: from Start to End,
// minutes after local midnight (End < Start crosses midnight; Start == End
// is the whole day).
type DND struct {
	Enabled  bool   `json:"enabled"`
	Start    int    `json:"start"`    // 0..1439
	End      int    `json:"end"`      // 0..1439
	TimeZone string `json:"timezone"` // IANA name, e.g. Europe/Paris; "" is UTC
}

// PushSettings are an account's push preferences (all devices).
type PushSettings struct {
	DND DND `json:"dnd"`
}
