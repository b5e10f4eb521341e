package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/longlink/longlink/core/imapi"
	"github.com/longlink/longlink/core/store"
)

// TestStoreErrCodes: a database that cannot answer for now (a failover:
// no writable server, the connection lost, a standby) is answered 503, which
// clients retry; it was an internal error (a login during a site's
// failover was refused 500).
func TestStoreErrCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want imapi.Code
	}{
		{"not found", fmt.Errorf("store: user: %w", store.ErrNotFound), imapi.ErrNotFound},
		{"no writable server", fmt.Errorf("store: user: %w", &pgconn.PgError{Code: "25006"}), imapi.ErrUnavailable},
		{"server in recovery", fmt.Errorf("store: check token: %w", &pgconn.PgError{Code: "57P03"}), imapi.ErrUnavailable},
		{"connection lost", fmt.Errorf("store: user: %w", io.ErrUnexpectedEOF), imapi.ErrUnavailable},
		{"store unavailable", fmt.Errorf("store: append: %w", store.ErrUnavailable), imapi.ErrUnavailable},
		{"store closed", store.ErrClosed, imapi.ErrUnavailable},
		{"deadline", fmt.Errorf("store: user: %w", context.DeadlineExceeded), imapi.ErrTimeout},
		{"unexpected", errors.New("store: something else"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ie *imapi.Error
			got := StoreErr(tc.err, "user")
			if !errors.As(got, &ie) {
				if tc.want != 0 {
					t.Fatalf("StoreErr(%v) = %v, want code %d", tc.err, got, tc.want)
				}
				return // left to the dispatcher: an internal error
			}
			if ie.Code != tc.want {
				t.Errorf("StoreErr(%v) = code %d, want %d", tc.err, ie.Code, tc.want)
			}
		})
	}
}
